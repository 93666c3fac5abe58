"""An answer Redis counted while JetStream was away, whose client never retries (a
closed tab, a dead phone): once JetStream is back, the answer is durable and counted
once, and the system of record agrees with itself and with the live board: every
player's total in SQL is the sum of their answer rows, and the live board and
GetPlayerRank show the same totals."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from sqlalchemy import func, select

from devstack.infra import NatsServer
from services.database.engine import create_engine
from services.database.tables import answers, scores
from tests.api import ApiError, GrpcApi
from tests.faults.checks import assert_services_serving
from tests.faults.processes import fault_stack, replace_backends, sync_to_sql
from tests.faults.proxy import TcpProxy, host_and_port
from tests.game import answer, join, next_question
from tests.stack import Backends, Stack

QUIZ = {
    "title": "Unconfirmed",
    "instant_feedback": True,  # the live board follows each answer at once
    "questions": [
        {"text": "q", "choices": ["a", "b"], "correct_choice": 1, "time_limit_ms": 60_000},
        {"text": "r", "choices": ["a", "b"], "correct_choice": 0, "time_limit_ms": 60_000},
    ],
}


async def sql_totals(database_url: str, quiz_id: str) -> tuple[dict[str, int], dict[str, int]]:
    """(scores.score by player, sum of answers.points by player) for the quiz."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as db:
            stored = await db.execute(
                select(scores.c.player_id, scores.c.score).where(scores.c.quiz_id == quiz_id)
            )
            summed = await db.execute(
                select(answers.c.player_id, func.sum(answers.c.points))
                .where(answers.c.quiz_id == quiz_id)
                .group_by(answers.c.player_id)
            )
            return (
                {p: int(s) for p, s in stored},
                {p: int(s) for p, s in summed if int(s) > 0},
            )
    finally:
        await engine.dispose()


async def live_totals(api: GrpcApi, quiz_id: str, player_ids: list[str]) -> dict[str, int]:
    board = await api.call("GetLeaderboard", {"quiz_id": quiz_id, "page_size": 100})
    from_board = {e["player_id"]: e["score"] for e in board["entries"]}
    for player_id in player_ids:
        rank = await api.call("GetPlayerRank", {"quiz_id": quiz_id, "player_id": player_id})
        assert rank["player"]["score"] == from_board[player_id], player_id
    return {p: s for p, s in from_board.items() if s > 0}


@pytest.mark.timeout(120)
async def test_an_answer_counted_while_jetstream_was_away_is_stored_without_a_retry(
    backends: Backends, private_nats: NatsServer
) -> None:
    async with TcpProxy(*host_and_port(private_nats.url)) as proxy:
        through = replace_backends(backends, nats_url=f"nats://127.0.0.1:{proxy.port}")
        async with fault_stack(through) as stack:
            await play(stack, proxy)


async def play(stack: Stack, proxy: TcpProxy) -> None:
    api = GrpcApi(stack.channels)
    host = stack.host_token("alice")
    quiz_id = str((await api.call("CreateQuiz", QUIZ, host))["quiz"]["quiz_id"])
    ann, bob, cat = [await join(api, quiz_id, name) for name in ("ann", "bob", "cat")]
    await api.call("StartQuiz", {"quiz_id": quiz_id}, host)
    await answer(api, ann, quiz_id, 0, 1)

    # NATS stops getting what the services send, then the connection drops with it:
    # Bob's answer is judged and counted by Redis, but its record never reaches
    # JetStream. Bob never sends it again.
    proxy.hold()
    try:
        with pytest.raises(ApiError) as unconfirmed:
            await answer(api, bob, quiz_id, 0, 1)
        assert unconfirmed.value.code is grpc.StatusCode.UNAVAILABLE
        assert unconfirmed.value.reason == "ANSWER_NOT_DURABLE"
    finally:
        await proxy.stop()
        await proxy.start()
    await assert_services_serving(stack, within=20)  # reconnected by themselves

    # Back: play on, close, copy to SQL.
    await answer(api, cat, quiz_id, 0, 0)
    await next_question(api, quiz_id, host)
    await answer(api, ann, quiz_id, 1, 0)
    players = [ann.player_id, bob.player_id, cat.player_id]
    live = await live_totals(api, quiz_id, players)
    assert bob.player_id in live, "Bob's judged answer counts on the live board"

    # Until Bob's record reaches JetStream, and so SQL (or 30 s: then the checks
    # below say what disagrees).
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        await sync_to_sql(stack)
        stored, summed = await sql_totals(stack.backends.database_url, quiz_id)
        if bob.player_id in summed or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(1)

    assert stored == summed, "a total in SQL is the sum of that player's answer rows"
    assert summed == live, "the live board counts exactly the durable answers"
    # Bob's answer is there once, though he never retried.
    assert summed[bob.player_id] == live[bob.player_id]
