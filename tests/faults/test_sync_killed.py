"""The sync job killed (SIGKILL) half-way through a backlog, then run again: every
batch commits with its checkpoint, so the second run copies exactly what the
first did not, and SQL ends up with every acknowledged answer once."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from devstack.infra import free_port
from services.database.engine import create_engine
from services.mesh.messaging import Subjects
from tests.faults.checks import (
    assert_each_answer_recorded_once,
    assert_live_leaderboard_matches,
    assert_running_totals_add_up,
)
from tests.faults.game import Game
from tests.faults.plan import QuizPlan
from tests.faults.processes import SyncCommand, fault_stack, service_process, sync_settings
from tests.faults.sql import assert_sql_matches_the_log, quiz_is_final
from tests.faults.standings import expected_standings
from tests.stack import Backends, Stack

# A backlog of 12,000 accepted answers, sent through the real score service as fast
# as two replicas take them (about 1,000/s on two cores, so this is what fits in
# the test's minute); the job copies it in 24 batches of 500.
PLAN = QuizPlan(players=400, questions=30, answer_window_seconds=0.0, max_in_flight=64)
BATCH_SIZE = 500


@contextlib.asynccontextmanager
async def score_replicas(stack: Stack, folder: Path, count: int) -> AsyncIterator[str]:
    """`count` score service processes sharing one port (SO_REUSEPORT); its address."""
    settings = {**stack.common(), "grpc_port": free_port(), "log_level": "WARNING"}
    replicas = [service_process("score", settings, folder / f"score-{i}.log") for i in range(count)]
    try:
        for replica in replicas:
            await replica.start()
        yield replicas[0].target
    finally:
        for replica in replicas:
            await replica.close()


@pytest.mark.timeout(90)
async def test_a_sync_job_killed_half_way_then_run_again_copies_every_answer_once(
    backends: Backends, tmp_path: Path
) -> None:
    async with fault_stack(backends, services=("quiz", "leaderboard")) as stack:
        async with (
            score_replicas(stack, tmp_path, count=2) as score,
            Game(stack, PLAN, score_target=score) as game,
        ):
            await game.create_and_join()
            await game.play()
            await game.close()
        assert not game.log.problems, game.log.describe_problems()
        assert len(game.log.acks) == PLAN.answers, game.log.summary()
        assert_running_totals_add_up(game.log, (p.player_id for p in game.players))
        expected = expected_standings(game.log, (p.player_id for p in game.players))
        await assert_live_leaderboard_matches(game, expected)
        await assert_each_answer_recorded_once(game)

        settings = sync_settings(stack, sync_batch_size=BATCH_SIZE)
        database = create_engine(backends.database_url)
        try:

            async def committed() -> tuple[int, int]:
                """Answers of the quiz in SQL, and the job's checkpoint."""
                async with database.connect() as conn:
                    count = await conn.scalar(
                        text("SELECT COUNT(*) FROM answers WHERE quiz_id = :quiz"),
                        {"quiz": game.quiz_id},
                    )
                    seq = await conn.scalar(
                        text("SELECT stream_seq FROM sync_checkpoints WHERE name = :name"),
                        {"name": Subjects(stack.nats_prefix).answers_stream},
                    )
                return int(count or 0), int(seq or 0)

            first = SyncCommand(settings)
            await first.start()
            deadline = time.monotonic() + 30
            while (await committed())[0] == 0:
                assert first.running, f"the job ended before it was killed\n{await first.wait()}"
                assert time.monotonic() < deadline, "no batch committed within 30 s"
                await asyncio.sleep(0.01)
            killed = await first.kill()
            assert killed.returncode < 0, killed.describe()  # killed by the signal

            copied, checkpoint = await committed()
            print(f"killed after {killed.seconds:.2f} s with {copied} answers committed")
            assert 0 < copied < PLAN.answers, "the job was not killed half-way"
            # The stream holds only this quiz's answers, one message each: the
            # checkpoint (a stream sequence) is exactly the number of answers copied.
            assert checkpoint == copied, "a batch and its checkpoint did not commit together"

            second = await SyncCommand(settings).run()
            assert second.returncode == 0, second.describe()
            print(f"the second run took {second.seconds:.2f} s")
            await assert_sql_matches_the_log(backends.database_url, game, expected)
            assert await committed() == (PLAN.answers, PLAN.answers)
            assert await quiz_is_final(backends.database_url, game.quiz_id)
        finally:
            await database.dispose()
