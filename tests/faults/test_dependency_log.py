"""What a process's log says about its dependencies, read as an operator would: one
line when a dependency goes away and one when it is back (with how long and how many
calls failed), not a line or a traceback per failed call or loop tick; nothing
about a connection the process closes itself; no asyncio leftovers when it stops."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2
from quizmesh.quiz.v1 import quiz_pb2, quiz_pb2_grpc

from devstack.infra import free_port
from services.mesh.health_client import health_status
from tests.faults.plan import QuizPlan
from tests.faults.processes import SyncCommand, fault_stack, service_process, sync_settings
from tests.faults.proxy import TcpProxy, host_and_port
from tests.stack import Backends, Stack, bearer

OUTAGE_SECONDS = 3.0
# Questions that stay open through the outage, so the deadline sweep keeps working.
PLAN = QuizPlan(players=1, questions=2)


def log_entries(log_file: Path) -> list[dict[str, Any]]:
    """The process's log lines, each one JSON object (anything else fails the test)."""
    return [json.loads(line) for line in log_file.read_text().splitlines() if line]


def between(entries: list[dict[str, Any]], first: str, last: str) -> list[dict[str, Any]]:
    messages = [e["message"] for e in entries]
    return entries[messages.index(first) + 1 : messages.index(last)]


async def until_serving(channel: grpc.aio.Channel, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while await health_status(channel, seconds=1) != health_pb2.HealthCheckResponse.SERVING:
        assert time.monotonic() < deadline, f"not SERVING again within {within:g} s"
        await asyncio.sleep(0.05)


@pytest.mark.timeout(60)
async def test_a_database_outage_is_logged_as_two_lines_with_its_duration_and_failed_calls(
    own_backends: Backends, tmp_path: Path
) -> None:
    backends = own_backends  # the quiz service sweeps every quiz of its database
    async with (
        TcpProxy(*host_and_port(backends.database_url)) as to_database,
        fault_stack(backends, services=()) as stack,
    ):
        settings = {
            **stack.common(),
            "grpc_port": free_port(),
            "database_url": to_database.url_for(backends.database_url),
        }
        log_file = tmp_path / "quiz.log"
        quiz = service_process("quiz", settings, log_file)
        await quiz.start()
        try:
            async with grpc.aio.insecure_channel(quiz.target) as channel:
                stub = quiz_pb2_grpc.QuizServiceStub(channel)
                host = bearer(stack.host_token())
                created = await stub.CreateQuiz(PLAN.create_request("outage"), metadata=host)
                await stub.StartQuiz(
                    quiz_pb2.StartQuizRequest(quiz_id=created.quiz.quiz_id), metadata=host
                )

                await to_database.stop()
                refused: list[grpc.StatusCode] = []
                ends = time.monotonic() + OUTAGE_SECONDS
                while time.monotonic() < ends:
                    try:
                        await stub.CreateQuiz(PLAN.create_request("lost"), metadata=host, timeout=5)
                    except grpc.aio.AioRpcError as e:
                        refused.append(e.code())
                    await asyncio.sleep(0.1)
                await to_database.start()
                await until_serving(channel)
                await stub.CreateQuiz(PLAN.create_request("back"), metadata=host, timeout=5)
        finally:
            await quiz.stop()

    entries = log_entries(log_file)
    during = between(entries, "listening", "shutting down")
    assert len(during) == 2, [e["message"] for e in during]
    went, back = during
    assert (went["level"], went["message"]) == (
        "warning",
        f"database unreachable: {went['reason']}",
    )
    assert "MySQL server" in went["reason"], went
    assert (back["level"], back["message"]) == (
        "info",
        f"database reachable again after {back['seconds']:.1f} s, "
        f"{back['failed_calls']} calls failed meanwhile",
    )
    assert OUTAGE_SECONDS - 1 < back["seconds"] < OUTAGE_SECONDS + 5
    assert set(refused) == {grpc.StatusCode.UNAVAILABLE}
    # Every refused call counted, and the sweep's failed ticks besides.
    assert back["failed_calls"] > len(refused) > 10
    assert not [e for e in entries if "error" in e or e["level"] == "error"], entries


@pytest.mark.timeout(60)
async def test_a_sync_run_does_not_report_the_nats_connection_it_closes_itself(
    module_stack: Stack,
) -> None:
    result = await SyncCommand(sync_settings(module_stack)).run()

    assert result.returncode == 0, result.describe()
    entries = [json.loads(line) for line in result.stderr.splitlines()]
    # (It may also make other tests' closed quizzes final: info lines of their own.)
    assert [e for e in entries if e["level"] != "info" or "nats" in e["message"]] == []
    assert (entries[-1]["level"], entries[-1]["message"]) == ("info", "sync done")


@pytest.mark.timeout(60)
async def test_a_service_stopped_while_nats_stalls_leaves_no_unretrieved_asyncio_future(
    backends: Backends, tmp_path: Path
) -> None:
    async with (
        TcpProxy(*host_and_port(backends.nats_url)) as to_nats,
        fault_stack(backends, services=()) as stack,
    ):
        settings = {
            **stack.common(),
            "grpc_port": free_port(),
            "nats_url": f"nats://127.0.0.1:{to_nats.port}",
        }
        log_file = tmp_path / "score.log"
        score = service_process("score", settings, log_file)
        await score.start()
        to_nats.hold()  # connected, but nothing it sends arrives: the drain cannot end
        await asyncio.sleep(0.5)
        started = time.monotonic()
        await score.stop(30)
        stopped_in = time.monotonic() - started

    assert score.returncode == 0, score.tail()
    assert stopped_in < 15  # each closing step bounded
    messages = [e["message"] for e in log_entries(log_file)]
    assert "stopped" in messages
    assert not [m for m in messages if "never retrieved" in m], messages
