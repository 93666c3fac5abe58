"""NATS (with JetStream) killed with SIGKILL during a quiz and started again on the
same port with its store: the services reconnect by themselves, watchers get
updates again, and no acknowledged answer is lost or counted twice."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from quizmesh.common.v1 import common_pb2

from devstack.infra import NatsServer
from tests.faults.checks import (
    assert_each_answer_recorded_once,
    assert_redis_matches_the_log,
    assert_services_serving,
)
from tests.faults.game import Game
from tests.faults.plan import QuizPlan
from tests.faults.processes import fault_stack, replace_backends, sync_to_sql
from tests.faults.sql import assert_sql_matches_the_log
from tests.faults.standings import Standing, ranked
from tests.faults.watchers import LeaderboardWatcher, QuizWatcher, expected_lifecycle
from tests.stack import Backends

# 200 players, 4 questions, each question's answers spread over 2 s (100/s).
PLAN = QuizPlan(players=200, questions=4, answer_window_seconds=2.0)
OUTAGE_SECONDS = 3.0


def shows_final_board(
    expected: list[Standing],
) -> Callable[[common_pb2.LeaderboardSnapshot], bool]:
    """The closed quiz's board: final, everyone counted, the top as expected."""

    def check(snapshot: common_pb2.LeaderboardSnapshot) -> bool:
        top = [(e.rank, e.player_id, e.score) for e in snapshot.entries]
        return (
            snapshot.is_final
            and snapshot.total_players == len(expected)
            and bool(top)
            and top == ranked(expected)[: len(top)]
        )

    return check


@pytest.mark.timeout(90)
async def test_nats_killed_and_restarted_mid_quiz_loses_no_answer_and_watchers_resume(
    backends: Backends, private_nats: NatsServer
) -> None:
    async with (
        fault_stack(replace_backends(backends, nats_url=private_nats.url)) as stack,
        Game(stack, PLAN) as game,
    ):
        await game.create_and_join()
        board = LeaderboardWatcher(stack, game.quiz_id)
        events = QuizWatcher(stack, game.quiz_id)
        try:

            async def outage() -> None:
                # Early in question 1, while answers stream in.
                await game.log.until(PLAN.players + PLAN.players // 4)
                await private_nats.kill()
                await asyncio.sleep(OUTAGE_SECONDS)
                await private_nats.start()

            await asyncio.gather(game.play(), outage())
            await game.close()
            print(game.log.summary())

            await assert_services_serving(stack)  # they reconnected by themselves
            # No answer could be acknowledged without JetStream: clients retried.
            assert sum(game.log.retried.values()) > 0, "no client ever had to retry"
            expected = await assert_redis_matches_the_log(game)
            await assert_each_answer_recorded_once(game)

            # The watchers, connected since before the outage, see the rest of the quiz.
            final = await board.until(shows_final_board(expected), within=15)
            assert len(final.entries) == 10  # the snapshot's top
            await events.until("quiz_closed", within=15)
            assert events.lifecycle() == expected_lifecycle(PLAN.questions), events.breaks
            sequences = [seq for seq, _, _ in events.events]
            assert sequences == sorted(set(sequences)), "events repeated or out of order"
            print(f"leaderboard stream breaks: {board.breaks}; quiz stream breaks: {events.breaks}")

            await sync_to_sql(stack)
            await assert_sql_matches_the_log(backends.database_url, game, expected)
        finally:
            await board.stop()
            await events.stop()
