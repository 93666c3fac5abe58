"""MySQL unreachable while the sync job runs (a TCP proxy in front of the test's
database refuses or cuts connections; the server itself is never touched): the
job fails with a clear error naming the database and a non-zero exit, commits
nothing half-done, and the next run catches up exactly."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from services.mesh.messaging import Subjects
from tests.faults.checks import assert_redis_matches_the_log
from tests.faults.game import Game
from tests.faults.plan import QuizPlan
from tests.faults.processes import SyncCommand, SyncResult, fault_stack, sync_settings
from tests.faults.proxy import TcpProxy, host_and_port
from tests.faults.sql import (
    assert_sql_answers_match,
    assert_sql_matches_the_log,
    quiz_is_final,
    sql_answer_count,
    sql_rows,
)
from tests.stack import Backends

# 150 players, 4 questions: two synced while MySQL answers, two after it went away.
PLAN = QuizPlan(players=150, questions=4, answer_window_seconds=1.0)
# Small batches, so that a connection cut during a run lands between commits.
BATCH_SIZE = 50
DATABASE_FAILED = 2  # quizmesh-sync's exit status when the database failed


def assert_fails_naming_the_database(result: SyncResult, proxy: TcpProxy) -> None:
    """Exit status 2 and, besides the JSON log lines, a message for a person that
    says the database failed and which one, without a stack trace."""
    assert result.returncode == DATABASE_FAILED, result.describe()
    said = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert said, result.describe()
    assert "database" in said[0], result.describe()
    assert f"127.0.0.1:{proxy.port}" in said[0], "the message must say which database"
    assert not any("Traceback" in line for line in said), result.describe()


@pytest.mark.timeout(90)
async def test_sync_fails_clearly_while_mysql_is_unreachable_and_the_next_run_catches_up(
    backends: Backends,
) -> None:
    assert make_url(backends.database_url).get_backend_name() == "mysql", (
        "this test needs the suite's MySQL/MariaDB (QUIZMESH_TEST_MYSQL_URL)"
    )
    async with (
        TcpProxy(*host_and_port(backends.database_url)) as proxy,
        fault_stack(backends, services=("quiz", "score", "leaderboard")) as stack,
        Game(stack, PLAN) as game,
    ):
        settings = sync_settings(
            stack,
            database_url=proxy.url_for(backends.database_url),
            sync_batch_size=BATCH_SIZE,
        )

        async def checkpoint() -> int:
            rows = await sql_rows(
                backends.database_url,
                "SELECT stream_seq FROM sync_checkpoints WHERE name = :name",
                name=Subjects(stack.nats_prefix).answers_stream,
            )
            return int(rows[0].stream_seq) if rows else 0

        await game.create_and_join()
        await game.play(questions=range(2))
        first = await SyncCommand(settings).run()
        assert first.returncode == 0, first.describe()
        await assert_sql_answers_match(backends.database_url, game)
        synced = len(game.log.acks)
        traffic_of_a_run = proxy.bytes_sent

        # Unreachable from the start: refused at once, nothing written.
        await proxy.stop()
        await game.play(questions=range(2, PLAN.questions))
        await game.close()
        refused = await SyncCommand(settings).run(within=30)
        assert_fails_naming_the_database(refused, proxy)
        assert refused.seconds < 20, "an unreachable database must fail the run fast"
        assert await sql_answer_count(backends.database_url, game.quiz_id) == synced

        # Gone in the middle of a run: the batches committed so far stay, each
        # with its checkpoint; the one in progress rolls back.
        await proxy.start()
        proxy.cut_after(traffic_of_a_run // 3)
        cut = await SyncCommand(settings).run(within=30)
        assert not proxy.listening, "the run finished before the cut"
        assert_fails_naming_the_database(cut, proxy)
        partial = await sql_answer_count(backends.database_url, game.quiz_id)
        assert synced < partial < PLAN.answers, f"{partial} answers after the cut"
        assert await checkpoint() == partial
        assert not await quiz_is_final(backends.database_url, game.quiz_id)

        # Back: the next run copies exactly the rest.
        await proxy.start()
        caught_up = await SyncCommand(settings).run()
        assert caught_up.returncode == 0, caught_up.describe()
        expected = await assert_redis_matches_the_log(game)
        await assert_sql_matches_the_log(backends.database_url, game, expected)
        assert await checkpoint() == PLAN.answers
        assert await quiz_is_final(backends.database_url, game.quiz_id)
        count = await sql_rows(
            backends.database_url,
            "SELECT COUNT(*) AS n FROM scores WHERE quiz_id = :quiz",
            quiz=game.quiz_id,
        )
        assert count[0].n == PLAN.players
