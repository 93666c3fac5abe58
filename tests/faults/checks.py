"""Checks of Redis (through the services' gRPC) and JetStream against the answer log."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

import grpc
import nats
from grpc_health.v1 import health_pb2
from quizmesh.leaderboard.v1 import leaderboard_pb2, leaderboard_pb2_grpc
from quizmesh.score.v1 import score_pb2

from services.mesh.health_client import health_status
from services.mesh.messaging import Subjects
from tests.faults.answer_log import Ack, AnswerLog
from tests.faults.game import ATTEMPT_TIMEOUT_SECONDS, Game
from tests.faults.plan import Player
from tests.faults.standings import Standing, differences, expected_standings, ranked
from tests.stack import Stack, bearer


async def assert_services_serving(stack: Stack, within: float = 10.0) -> None:
    """Every in-process service reports SERVING through grpc.health.v1 again (each
    reports NOT_SERVING while a dependency does not answer)."""
    deadline = time.monotonic() + within
    for name, channel in stack.channels.items():
        while True:
            status = await health_status(channel, seconds=2)
            if status == health_pb2.HealthCheckResponse.SERVING:
                break
            assert time.monotonic() < deadline, f"{name} not SERVING after {within:g} s"
            await asyncio.sleep(0.1)


async def leaderboard_pages(
    stub: leaderboard_pb2_grpc.LeaderboardServiceAsyncStub, quiz_id: str, page_size: int = 100
) -> tuple[list[tuple[int, str, int]], int, bool]:
    """Every page of GetLeaderboard: (rank, player, score) rows, total, is_final."""
    rows: list[tuple[int, str, int]] = []
    token = ""
    while True:
        page = await stub.GetLeaderboard(
            leaderboard_pb2.GetLeaderboardRequest(
                quiz_id=quiz_id, page_size=page_size, page_token=token
            ),
            timeout=10,
        )
        rows += [(e.rank, e.player_id, e.score) for e in page.entries]
        token = page.next_page_token
        if not token:
            return rows, page.total_players, page.is_final


async def assert_live_leaderboard_matches(game: Game, expected: list[Standing]) -> None:
    """GetLeaderboard, page by page, ranks every player exactly as the log does."""
    rows, total, _ = await leaderboard_pages(game.stack.leaderboard, game.quiz_id)
    want = ranked(expected)
    assert total == len(want), f"total_players {total}, expected {len(want)}"
    assert rows == want, differences(rows, want, "live leaderboard")


async def assert_player_scores_match(game: Game) -> None:
    """GetPlayerScore gives each player the total and the answers of their log,
    each question counted once."""
    limit = asyncio.Semaphore(32)
    wrong: list[str] = []

    async def check(player: Player) -> None:
        async with limit:
            reply, _ = await game.call_until_answered(
                player,
                lambda stub: stub.GetPlayerScore(
                    score_pb2.GetPlayerScoreRequest(
                        quiz_id=game.quiz_id, player_id=player.player_id
                    ),
                    metadata=bearer(player.token),
                    timeout=ATTEMPT_TIMEOUT_SECONDS,
                ),
            )
        logged = game.log.of(player.player_id)
        answers = [
            (
                a.question_index,
                a.choice_index,
                a.correct,
                a.points_awarded,
                a.answered_at.ToMilliseconds(),
            )
            for a in reply.answers
        ]
        if reply.score != sum(a.points for a in logged) or answers != [a.result for a in logged]:
            wrong.append(
                f"{player.player_id}: score {reply.score} answers {answers}; "
                f"log says {sum(a.points for a in logged)} {[a.result for a in logged]}"
            )

    await asyncio.gather(*(check(p) for p in game.players))
    assert not wrong, f"{len(wrong)} players' scores differ from the log:\n" + "\n".join(wrong[:5])


async def assert_retries_return_originals(game: Game) -> None:
    """Sending every acknowledged answer again returns the original result, marked
    as a replay, and changes nothing."""
    limit = asyncio.Semaphore(64)
    wrong: list[str] = []
    by_id = {p.player_id: p for p in game.players}

    async def again(ack: Ack) -> None:
        player = by_id[ack.player_id]
        request = score_pb2.SubmitAnswerRequest(
            quiz_id=game.quiz_id, question_index=ack.question, choice_index=ack.choice
        )
        async with limit:
            try:
                reply, attempts = await game.call_until_answered(
                    player,
                    lambda stub: stub.SubmitAnswer(
                        request, metadata=bearer(player.token), timeout=ATTEMPT_TIMEOUT_SECONDS
                    ),
                )
            except grpc.aio.AioRpcError as e:
                wrong.append(f"{ack.player_id} q{ack.question}: {e.code().name}: {e.details()}")
                return
        replay = Ack.of(ack.player_id, reply, attempts)
        if not replay.replayed or replay.result != ack.result:
            wrong.append(
                f"{ack.player_id} q{ack.question}: replayed={replay.replayed} "
                f"{replay.result}, originally {ack.result}"
            )

    await asyncio.gather(*(again(a) for a in list(game.log.acks.values())))
    assert not wrong, f"{len(wrong)} retries did not return the original:\n" + "\n".join(wrong[:8])


def assert_running_totals_add_up(log: AnswerLog, player_ids: Iterable[str]) -> None:
    """Each first acknowledgement carried the player's total so far: the sum of their
    points up to that question, so no answer had been counted twice (or lost) by then.
    (A replay carries the total at the time of the replay instead.)"""
    wrong = []
    for pid in player_ids:
        total = 0
        for ack in log.of(pid):
            total += ack.points
            if not ack.replayed and ack.total_score != total:
                wrong.append(f"{pid} q{ack.question}: total {ack.total_score}, expected {total}")
    assert not wrong, f"{len(wrong)} acknowledgements with a wrong total: {wrong[:5]}"


async def assert_redis_matches_the_log(game: Game) -> list[Standing]:
    """All the Redis-side checks; returns the expected standings for the SQL ones."""
    assert not game.log.problems, game.log.describe_problems()
    assert len(game.log.acks) == game.plan.answers, game.log.summary()
    assert_running_totals_add_up(game.log, (p.player_id for p in game.players))
    expected = expected_standings(game.log, (p.player_id for p in game.players))
    await assert_live_leaderboard_matches(game, expected)
    await assert_player_scores_match(game)
    await assert_retries_return_originals(game)
    # The replays above must not have moved anything.
    await assert_live_leaderboard_matches(game, expected)
    return expected


async def answers_recorded(stack: Stack) -> int:
    """How many accepted-answer records the stack's JetStream stream holds."""
    nc = await nats.connect(stack.backends.nats_url)
    try:
        info = await nc.jetstream().stream_info(Subjects(stack.nats_prefix).answers_stream)
        return int(info.state.messages)
    finally:
        await nc.close()


async def assert_each_answer_recorded_once(game: Game) -> None:
    """The durable record holds every acknowledged answer once: retries and replays
    were de-duplicated by their message id."""
    recorded = await answers_recorded(game.stack)
    assert recorded == len(game.log.acks), (
        f"JetStream holds {recorded} accepted answers, the clients saw {len(game.log.acks)}"
    )
