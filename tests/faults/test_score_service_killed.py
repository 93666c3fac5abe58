"""The score service killed (SIGKILL) in the middle of a quiz and started again on
the same port: the players' clients retry every unacknowledged answer unchanged,
and nothing is lost or counted twice."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from devstack.infra import free_port
from services.mesh.clock import now_ms
from tests.faults.checks import assert_each_answer_recorded_once, assert_redis_matches_the_log
from tests.faults.game import Game
from tests.faults.plan import QuizPlan
from tests.faults.processes import fault_stack, service_process, sync_to_sql
from tests.faults.proxy import TcpProxy, host_and_port
from tests.faults.sql import assert_sql_matches_the_log
from tests.stack import Backends

# 240 players answering 4 questions, each question's answers sent within 0.25 s:
# faster than one score process takes them, so 64 are always in flight.
PLAN = QuizPlan(players=240, questions=4, answer_window_seconds=0.25, max_in_flight=64)


@pytest.mark.timeout(90)
async def test_a_score_service_killed_mid_load_and_restarted_loses_and_doubles_no_answer(
    backends: Backends, tmp_path: Path
) -> None:
    async with fault_stack(backends, services=("quiz", "leaderboard")) as stack:
        settings = {**stack.common(), "grpc_port": free_port()}
        score = service_process("score", settings, tmp_path / "score.log")
        await score.start()
        try:
            async with Game(stack, PLAN, score_target=score.target) as game:
                await game.create_and_join()
                acked_at_kill = 0

                async def crash_and_restart() -> None:
                    nonlocal acked_at_kill
                    # Early in question 1, while answers stream in.
                    await game.log.until(PLAN.players + PLAN.players // 4)
                    acked_at_kill = len(game.log.acks)
                    await score.kill()
                    await asyncio.sleep(1.0)  # the clients keep retrying meanwhile
                    await score.start()

                await asyncio.gather(game.play(), crash_and_restart())
                await game.close()
                print(game.log.summary())

                # The kill was felt: answers sent after it had to be retried.
                assert PLAN.players < acked_at_kill < PLAN.answers
                assert sum(game.log.retried.values()) > 0, "no client ever had to retry"
                assert any(a.attempts > 1 for a in game.log.acks.values())
                expected = await assert_redis_matches_the_log(game)
                await assert_each_answer_recorded_once(game)

                await sync_to_sql(stack)
                await assert_sql_matches_the_log(backends.database_url, game, expected)
        finally:
            await score.close()


@pytest.mark.timeout(90)
async def test_answers_scored_but_not_yet_recorded_when_the_score_service_dies_are_replayed(
    backends: Backends, tmp_path: Path
) -> None:
    """The narrowest window: answers already applied in Redis whose JetStream record
    had not been confirmed when the process died. Their retries must come back as
    replays with the original points and time, and be recorded then."""
    async with (
        TcpProxy(*host_and_port(backends.nats_url)) as to_nats,
        fault_stack(backends, services=("quiz", "leaderboard")) as stack,
    ):
        settings = {
            **stack.common(),
            "grpc_port": free_port(),
            "nats_url": f"nats://127.0.0.1:{to_nats.port}",
        }
        score = service_process("score", settings, tmp_path / "score.log")
        await score.start()
        try:
            async with Game(stack, PLAN, score_target=score.target) as game:
                await game.create_and_join()
                killed_ms = 0

                async def crash_with_records_in_flight() -> None:
                    nonlocal killed_ms
                    await game.log.until(PLAN.players + PLAN.players // 4)
                    to_nats.hold()  # records leave the process but never arrive
                    await asyncio.sleep(0.5)  # answers keep being scored meanwhile
                    killed_ms = now_ms()
                    await score.kill()
                    await to_nats.stop()  # what was held is gone with the process
                    await to_nats.start()
                    await asyncio.sleep(0.5)
                    await score.start()

                await asyncio.gather(game.play(), crash_with_records_in_flight())
                await game.close()
                print(game.log.summary())

                replays = [a for a in game.log.acks.values() if a.replayed]
                assert replays, "no answer was scored-but-unrecorded at the kill"
                # A replay carries the original result, scored before the kill.
                assert all(a.attempts > 1 and a.answered_ms < killed_ms for a in replays)
                expected = await assert_redis_matches_the_log(game)
                await assert_each_answer_recorded_once(game)

                await sync_to_sql(stack)
                await assert_sql_matches_the_log(backends.database_url, game, expected)
        finally:
            await score.close()
