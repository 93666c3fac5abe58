"""docs/spec.md#no-per-watcher-work-in-shared-state: a stream process works out its
watching players' own ranks from its copy of the board, kept level from the
leaderboard service's BoardUpdates; Redis does nothing per watcher. Every `you`
a watcher gets equals what Redis ranks (GetPlayerRank), ties included, through
answers, a reveal at the close, a lost update and a rebuilt live state."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import nats
import pytest
from quizmesh.common.v1 import events_pb2
from quizmesh.stream.v1 import stream_pb2, stream_pb2_grpc
from redis.asyncio import Redis

from services.live.keys import QuizKeys
from services.live.layout import Field
from services.mesh.messaging import Subjects
from services.stream.board_copy import GAP_SECONDS
from tests.api import GrpcApi
from tests.game import Player, answer, join
from tests.stack import Stack
from tests.test_metrics import scrape, value

pytestmark = pytest.mark.usefixtures("stack")

QUIZ: dict[str, Any] = {
    "title": "Own ranks",
    "questions": [
        {"text": f"q{i}", "choices": ["a", "b"], "correct_choice": i % 2, "points": 10}
        for i in range(3)
    ],
}


class Watcher:
    """A player's WatchLeaderboard over native gRPC, keeping the latest `you`."""

    def __init__(self, stack: Stack, quiz_id: str, player: Player) -> None:
        stub = stream_pb2_grpc.StreamServiceStub(stack.channels["stream"])
        self.player = player
        self.call = stub.WatchLeaderboard(
            stream_pb2.WatchLeaderboardRequest(quiz_id=quiz_id, access_token=player.token)
        )
        self.you: tuple[int, int] | None = None
        self.task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
            async for message in self.call:
                if message.HasField("you"):
                    self.you = (message.you.rank, message.you.score)

    async def close(self) -> None:
        self.call.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
async def game(stack: Stack) -> AsyncIterator[tuple[str, list[Player], list[Watcher]]]:
    api = GrpcApi(stack.channels)
    host = stack.host_token("alice")
    quiz_id = (await api.call("CreateQuiz", QUIZ, host))["quiz"]["quiz_id"]
    players = [await join(api, quiz_id, f"r{i}") for i in range(24)]
    watchers = [Watcher(stack, quiz_id, p) for p in players[::2]]
    await api.call("StartQuiz", {"quiz_id": quiz_id}, host)
    try:
        yield quiz_id, players, watchers
    finally:
        await asyncio.gather(*(w.close() for w in watchers))


async def redis_ranks(stack: Stack, quiz_id: str, watchers: list[Watcher]) -> list[Any]:
    api = GrpcApi(stack.channels)
    host = stack.host_token("alice")
    ranks = []
    for w in watchers:
        found = await api.call(
            "GetPlayerRank", {"quiz_id": quiz_id, "player_id": w.player.player_id}, host
        )
        ranks.append((found["player"]["rank"], found["player"]["score"]))
    return ranks


async def level_with_redis(stack: Stack, quiz_id: str, watchers: list[Watcher]) -> None:
    """Waits until every watcher's own rank is the one Redis gives (fails after 5 s)."""
    expected: list[Any] = []
    for _ in range(100):
        expected = await redis_ranks(stack, quiz_id, watchers)
        if [w.you for w in watchers] == expected:
            return
        await asyncio.sleep(0.05)
    assert [w.you for w in watchers] == expected


async def own_ranks(stack: Stack) -> tuple[float, float]:
    """(ranks from the copy, ranks from Redis) the stream service worked out so far."""
    samples = await scrape(stack, "stream")
    return (
        value(samples, "quizmesh_own_ranks_total", source="copy"),
        value(samples, "quizmesh_own_ranks_total", source="redis"),
    )


async def test_watchers_ranks_come_from_the_copy_and_equal_redis_ties_included(
    stack: Stack, game: tuple[str, list[Player], list[Watcher]]
) -> None:
    quiz_id, players, watchers = game
    api = GrpcApi(stack.channels)
    host = stack.host_token("alice")
    # Everyone at 0, ranked by join time: ties on points, none on the packed score.
    await level_with_redis(stack, quiz_id, watchers)
    _, from_redis = await own_ranks(stack)

    for i, p in enumerate(players):
        await answer(api, p, quiz_id, 0, i % 3 % 2)  # two thirds wrong
    await api.call("AdvanceQuestion", {"quiz_id": quiz_id}, host)  # the reveal: all at once
    await level_with_redis(stack, quiz_id, watchers)
    await api.call("AdvanceQuestion", {"quiz_id": quiz_id}, host)
    for p in players[:9]:
        await answer(api, p, quiz_id, 1, 1)
    await api.call("AdvanceQuestion", {"quiz_id": quiz_id}, host)
    await level_with_redis(stack, quiz_id, watchers)

    copy_after, redis_after = await own_ranks(stack)
    assert copy_after > 0
    assert redis_after == from_redis  # once level, nothing per watcher in Redis


async def test_a_lost_update_makes_the_copy_read_the_board_afresh(
    stack: Stack, game: tuple[str, list[Player], list[Watcher]], caplog: pytest.LogCaptureFixture
) -> None:
    quiz_id, players, watchers = game
    api = GrpcApi(stack.channels)
    host = stack.host_token("alice")
    await level_with_redis(stack, quiz_id, watchers)
    state = await live_state(stack, quiz_id)
    for _ in range(50):  # the leaderboard's tick has taken the joins into an update
        if Field.BOARD_SEQUENCE in state and not await changes_waiting(stack, quiz_id):
            break
        await asyncio.sleep(0.1)
        state = await live_state(stack, quiz_id)
    generation, sequence = int(state[Field.BOARD_GENERATION]), int(state[Field.BOARD_SEQUENCE])

    # An update far ahead of the next one: the ones between were lost.
    lost = events_pb2.BoardUpdate(generation=generation, sequence=sequence + 5, complete=True)
    nc = await nats.connect(stack.backends.nats_url)
    try:
        subject = Subjects(stack.nats_prefix).leaderboard(quiz_id)
        await nc.publish(subject, lost.SerializeToString())
        await nc.flush()
    finally:
        await nc.close()
    await asyncio.sleep(GAP_SECONDS + 0.5)  # the ones between never come
    for p in players[:6]:
        await answer(api, p, quiz_id, 0, 0)
    await api.call("AdvanceQuestion", {"quiz_id": quiz_id}, host)

    await level_with_redis(stack, quiz_id, watchers)
    assert "board update lost; reading the board afresh" in caplog.text


async def changes_waiting(stack: Stack, quiz_id: str) -> int:
    redis = Redis.from_url(stack.backends.redis_url, decode_responses=True)
    try:
        return int(await redis.scard(QuizKeys(stack.key_prefix, quiz_id).changed))
    finally:
        await redis.aclose()


async def live_state(stack: Stack, quiz_id: str) -> dict[str, str]:
    redis = Redis.from_url(stack.backends.redis_url, decode_responses=True)
    try:
        state = await redis.hgetall(QuizKeys(stack.key_prefix, quiz_id).state)
        return {str(k): str(v) for k, v in state.items()}
    finally:
        await redis.aclose()
