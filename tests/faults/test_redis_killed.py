"""Redis killed with SIGKILL during a running quiz and started again empty (no
persistence): the quiz's live state is rebuilt from SQL and JetStream while the
players' clients retry, and every acknowledged answer counts exactly once."""

from __future__ import annotations

import asyncio

import pytest

from devstack.infra import ValkeyServer
from tests.faults.checks import (
    assert_each_answer_recorded_once,
    assert_redis_matches_the_log,
    assert_services_serving,
)
from tests.faults.game import Game
from tests.faults.plan import QuizPlan
from tests.faults.processes import fault_stack, replace_backends, sync_to_sql
from tests.faults.sql import assert_sql_matches_the_log
from tests.stack import Backends

# 200 players, 4 questions, each question's answers spread over 2 s (100/s).
PLAN = QuizPlan(players=200, questions=4, answer_window_seconds=2.0)


@pytest.mark.timeout(90)
async def test_redis_killed_and_restarted_empty_mid_quiz_loses_and_doubles_no_answer(
    backends: Backends, private_redis: ValkeyServer
) -> None:
    async with (
        fault_stack(replace_backends(backends, redis_url=private_redis.url)) as stack,
        Game(stack, PLAN) as game,
    ):
        await game.create_and_join()

        async def outage() -> None:
            # Early in question 1, while answers stream in.
            await game.log.until(PLAN.players + PLAN.players // 4)
            await private_redis.kill()
            await asyncio.sleep(1.0)
            await private_redis.start()  # empty: no persistence

        await asyncio.gather(game.play(), outage())
        await game.close()
        print(game.log.summary())

        await assert_services_serving(stack)  # they reconnected by themselves
        assert sum(game.log.retried.values()) > 0, "no client ever had to retry"
        expected = await assert_redis_matches_the_log(game)
        await assert_each_answer_recorded_once(game)

        await sync_to_sql(stack)
        await assert_sql_matches_the_log(backends.database_url, game, expected)
