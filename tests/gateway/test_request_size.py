"""The request size limit: a body or message over it is refused before the backend."""

from __future__ import annotations

import grpc
import httpx
import pytest
from quizmesh.quiz.v1 import quiz_pb2, quiz_pb2_grpc

from tests.gateway.conftest import MAX_BODY, Backend, Keys, assert_json_error, bearer


async def test_body_over_the_limit_is_a_json_413(
    http: httpx.AsyncClient, backend: Backend, keys: Keys
) -> None:
    before = len(backend.calls)

    response = await http.post(
        "/v1/quizzes", json={"title": "x" * MAX_BODY}, headers=bearer(keys.token())
    )

    message = assert_json_error(
        response, 413, grpc.StatusCode.RESOURCE_EXHAUSTED, "REQUEST_TOO_LARGE"
    )
    assert str(MAX_BODY) in message
    assert len(backend.calls) == before


async def test_native_grpc_message_over_the_limit_is_refused(
    channel: grpc.aio.Channel, backend: Backend
) -> None:
    before = len(backend.calls)
    stub = quiz_pb2_grpc.QuizServiceStub(channel)

    with pytest.raises(grpc.aio.AioRpcError) as error:
        # Several HTTP/2 frames: a body that fits one frame is not checked (see the template).
        await stub.CreateQuiz(quiz_pb2.CreateQuizRequest(title="x" * 10 * MAX_BODY))

    assert error.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.value.details() == f"request body is larger than {MAX_BODY} bytes"
    assert len(backend.calls) == before
