"""The score service stopped gracefully (SIGTERM, as Kubernetes stops a pod) while
answers are in flight: each call it took finishes, and its answer is stored durably;
each call that reaches it during the stop is answered UNAVAILABLE, which clients
retry on another replica. None comes back CANCELLED (which no client retries)."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import time
from pathlib import Path

import grpc
import pytest
from quizmesh.score.v1 import score_pb2

from devstack.infra import free_port
from tests.faults.checks import answers_recorded
from tests.faults.game import Game
from tests.faults.plan import Player, QuizPlan
from tests.faults.processes import fault_stack, service_process
from tests.faults.proxy import TcpProxy, host_and_port
from tests.stack import Backends, bearer

# One player's answer in flight, 40 more arriving as the stop begins.
PLAN = QuizPlan(players=42, questions=2)
GRACE_SECONDS = 10.0


async def until_logged(log_file: Path, message: str) -> None:
    deadline = time.monotonic() + 10
    while f'"message": "{message}"' not in await asyncio.to_thread(log_file.read_text):
        assert time.monotonic() < deadline, f"{message!r} not logged within 10 s"
        await asyncio.sleep(0.02)


async def until_scored(game: Game, player: Player) -> None:
    """Until the score service shows the player's answer: it is scored (in Redis) and
    its call waits for JetStream."""
    deadline = time.monotonic() + 10
    while True:
        reply = await game.score_stub(player).GetPlayerScore(
            score_pb2.GetPlayerScoreRequest(quiz_id=game.quiz_id, player_id=player.player_id),
            metadata=bearer(player.token),
            timeout=2,
        )
        if reply.answers:
            return
        assert time.monotonic() < deadline, "the answer was never scored"
        await asyncio.sleep(0.02)


async def outcome(game: Game, player: Player) -> grpc.StatusCode:
    """One attempt at the player's answer to question 0 (no retry)."""
    try:
        await game.score_stub(player).SubmitAnswer(
            score_pb2.SubmitAnswerRequest(
                quiz_id=game.quiz_id, question_index=0, choice_index=PLAN.choice(player.index, 0)
            ),
            metadata=bearer(player.token),
            timeout=2 * GRACE_SECONDS,
        )
    except grpc.aio.AioRpcError as e:
        return e.code()
    return grpc.StatusCode.OK


@pytest.mark.timeout(90)
async def test_answers_in_flight_at_sigterm_are_stored_and_later_ones_told_to_retry(
    backends: Backends, tmp_path: Path
) -> None:
    async with (
        TcpProxy(*host_and_port(backends.nats_url)) as to_nats,
        fault_stack(backends, services=("quiz",)) as stack,
    ):
        settings = {
            **stack.common(),
            "grpc_port": free_port(),
            "nats_url": f"nats://127.0.0.1:{to_nats.port}",
            "shutdown_grace_seconds": GRACE_SECONDS,
            # Long enough that only the stop, not a timeout, decides the call.
            "publish_timeout_seconds": GRACE_SECONDS,
        }
        log_file = tmp_path / "score.log"
        score = service_process("score", settings, log_file)
        await score.start()
        try:
            async with Game(stack, PLAN, score_target=score.target, channels=1) as game:
                await game.create_and_join()
                await game.open_question(0)
                first, slow, *arriving = game.players
                assert await game.submit(first, 0, PLAN.choice(first.index, 0))

                # An answer scored, its JetStream record held on the way.
                to_nats.hold()
                in_flight = asyncio.ensure_future(outcome(game, slow))
                await until_scored(game, slow)

                # More answers reach the process while it cannot run, so they wait in
                # grpc-core, not yet picked up, when the SIGTERM is handled.
                assert score.pid is not None
                os.kill(score.pid, signal.SIGSTOP)
                arrivals = [asyncio.ensure_future(outcome(game, p)) for p in arriving]
                await asyncio.sleep(0.5)  # sent
                os.kill(score.pid, signal.SIGTERM)
                os.kill(score.pid, signal.SIGCONT)
                await until_logged(log_file, "shutting down")

                await asyncio.sleep(0.5)  # the stop is under way, the record still held
                assert not in_flight.done(), "the call ended before its record was stored"
                await to_nats.start()  # the record reaches JetStream
                answered = await in_flight
                outcomes = dict(zip(arriving, await asyncio.gather(*arrivals), strict=True))
                exit_code = await asyncio.wait_for(score.wait(), 2 * GRACE_SECONDS)

                assert answered == grpc.StatusCode.OK
                codes = collections.Counter(outcomes.values())
                assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, codes
                assert exit_code == 0, score.tail()
                # Durable: the first answer, the one in flight, and any arrival taken.
                assert await answers_recorded(stack) == 2 + codes[grpc.StatusCode.OK]

                # The refused ones, retried on the next process, are stored too.
                await score.start()
                told_to_retry = [p for p, code in outcomes.items() if code != grpc.StatusCode.OK]
                for player in told_to_retry:
                    assert await game.submit(player, 0, PLAN.choice(player.index, 0))
                assert await answers_recorded(stack) == PLAN.players
        finally:
            await score.close()
