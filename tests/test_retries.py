"""gRPC's own retry policy for clients (services/mesh/retries.py): every RPC of the
contract is either retried or deliberately not, and a channel with the policy sends
a retried call again on UNAVAILABLE, but never a join or a host's lifecycle call,
and never on another refusal."""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator

import grpc
import pytest
from quizmesh.leaderboard.v1 import leaderboard_pb2
from quizmesh.quiz.v1 import quiz_pb2
from quizmesh.score.v1 import score_pb2
from quizmesh.stream.v1 import stream_pb2

from quizctl.client import Connection, QuizMeshClient
from services.mesh import retries
from services.mesh.context import Context


def contract() -> dict[str, set[str]]:
    files = (quiz_pb2, score_pb2, leaderboard_pb2, stream_pb2)
    return {
        service.full_name: {method.name for method in service.methods}
        for module in files
        for service in module.DESCRIPTOR.services_by_name.values()
    }


def test_every_rpc_of_the_contract_is_either_retried_or_not() -> None:
    for service, methods in contract().items():
        retried = retries.RETRIED.get(service, frozenset())
        not_retried = retries.NOT_RETRIED.get(service, frozenset())
        assert retried | not_retried == methods, service
        assert not retried & not_retried, service


def test_the_host_calls_and_joining_are_never_retried() -> None:
    assert retries.RETRIED[retries.QUIZ].isdisjoint(
        {"CreateQuiz", "JoinQuiz", "StartQuiz", "AdvanceQuestion", "CloseQuiz"}
    )


class Flaky:
    """The quiz service's GetQuiz and StartQuiz only: refuses each quiz id `failures`
    times (UNAVAILABLE; NOT_FOUND for ids starting "NF", CANCELLED for "CX"),
    counting the calls."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: collections.Counter[str] = collections.Counter()

    async def _maybe_refuse(self, key: str, context: Context) -> None:
        self.calls[key] += 1
        if self.calls[key] <= self.failures:
            code = {"NF": grpc.StatusCode.NOT_FOUND, "CX": grpc.StatusCode.CANCELLED}.get(
                key[:2], grpc.StatusCode.UNAVAILABLE
            )
            await context.abort(code, "briefly away")

    async def get_quiz(
        self, request: quiz_pb2.GetQuizRequest, context: Context
    ) -> quiz_pb2.GetQuizResponse:
        await self._maybe_refuse(request.quiz_id, context)
        return quiz_pb2.GetQuizResponse(quiz=quiz_pb2.Quiz(quiz_id=request.quiz_id))

    async def start_quiz(
        self, request: quiz_pb2.StartQuizRequest, context: Context
    ) -> quiz_pb2.StartQuizResponse:
        await self._maybe_refuse(request.quiz_id, context)
        return quiz_pb2.StartQuizResponse(quiz=quiz_pb2.Quiz(quiz_id=request.quiz_id))

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            retries.QUIZ,
            {
                "GetQuiz": grpc.unary_unary_rpc_method_handler(
                    self.get_quiz,
                    request_deserializer=quiz_pb2.GetQuizRequest.FromString,
                    response_serializer=quiz_pb2.GetQuizResponse.SerializeToString,
                ),
                "StartQuiz": grpc.unary_unary_rpc_method_handler(
                    self.start_quiz,
                    request_deserializer=quiz_pb2.StartQuizRequest.FromString,
                    response_serializer=quiz_pb2.StartQuizResponse.SerializeToString,
                ),
            },
        )


@pytest.fixture
async def flaky() -> AsyncIterator[tuple[Flaky, str]]:
    servicer = Flaky(failures=2)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((servicer.handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


async def test_quizctl_retries_a_read_refused_unavailable(flaky: tuple[Flaky, str]) -> None:
    servicer, target = flaky

    async with QuizMeshClient(Connection(target=target)) as client:
        reply = await client.get_quiz("Q1")

    assert reply.quiz.quiz_id == "Q1"
    assert servicer.calls["Q1"] == 3


async def test_a_read_refused_otherwise_is_not_retried(flaky: tuple[Flaky, str]) -> None:
    servicer, target = flaky

    async with QuizMeshClient(Connection(target=target)) as client:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await client.get_quiz("NF1")

    assert refused.value.code() is grpc.StatusCode.NOT_FOUND
    assert servicer.calls["NF1"] == 1


async def test_a_host_call_refused_unavailable_is_sent_once(flaky: tuple[Flaky, str]) -> None:
    servicer, target = flaky

    async with QuizMeshClient(Connection(target=target)) as client:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await client.start_quiz("Q2")

    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    assert servicer.calls["Q2"] == 1


async def test_retries_end_after_the_policy_s_attempts(flaky: tuple[Flaky, str]) -> None:
    servicer, target = flaky
    servicer.failures = 100

    async with QuizMeshClient(Connection(target=target)) as client:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await client.get_quiz("Q3")

    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    assert servicer.calls["Q3"] == retries.MAX_ATTEMPTS


async def test_a_read_a_stopping_server_cancelled_is_retried(flaky: tuple[Flaky, str]) -> None:
    servicer, target = flaky

    async with QuizMeshClient(Connection(target=target)) as client:
        reply = await client.get_quiz("CX1")

    assert reply.quiz.quiz_id == "CX1"
    assert servicer.calls["CX1"] == 3
