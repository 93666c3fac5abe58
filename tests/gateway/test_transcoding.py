"""HTTP/JSON transcoded to gRPC and back (fields, bodies, errors as JSON), and native
gRPC passed through on the same port."""

from __future__ import annotations

import grpc
import httpx
import pytest
from quizmesh.leaderboard.v1 import leaderboard_pb2, leaderboard_pb2_grpc
from quizmesh.quiz.v1 import quiz_pb2, quiz_pb2_grpc

from tests.gateway.conftest import QUIZ_ID, Backend, Keys, assert_json_error, bearer, canned_quiz


async def test_get_is_transcoded_with_snake_case_fields_and_defaults_printed(
    http: httpx.AsyncClient, backend: Backend
) -> None:
    response = await http.get(f"/v1/quizzes/{QUIZ_ID}")

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    quiz = response.json()["quiz"]
    assert quiz["quiz_id"] == QUIZ_ID
    assert quiz["question_count"] == 2
    assert quiz["current_question"] == -1
    assert quiz["player_count"] == 0
    assert quiz["state"] == "QUIZ_STATE_OPEN"
    assert quiz["create_time"] == "2023-11-14T22:13:20Z"
    assert backend.last("GetQuiz").request == quiz_pb2.GetQuizRequest(quiz_id=QUIZ_ID)


async def test_post_body_and_path_are_transcoded_into_the_request(
    http: httpx.AsyncClient, backend: Backend, keys: Keys
) -> None:
    body = {
        "title": "Capitals",
        "questions": [
            {"text": "Capital of Peru?", "choices": ["Lima", "Cusco"], "correct_choice": 0}
        ],
    }
    response = await http.post("/v1/quizzes", json=body, headers=bearer(keys.token()))

    assert response.status_code == 200, response.text
    assert response.json()["quiz"]["question_count"] == 1
    request = backend.last("CreateQuiz").request
    assert isinstance(request, quiz_pb2.CreateQuizRequest)
    assert request.questions[0].choices == ["Lima", "Cusco"]
    assert request.questions[0].correct_choice == 0


async def test_native_grpc_passes_through_the_same_port(
    channel: grpc.aio.Channel, backend: Backend, keys: Keys
) -> None:
    token = keys.token("carol")
    stub = quiz_pb2_grpc.QuizServiceStub(channel)

    reply = await stub.GetQuiz(
        quiz_pb2.GetQuizRequest(quiz_id=QUIZ_ID), metadata=tuple(bearer(token).items())
    )

    assert reply.quiz == canned_quiz(QUIZ_ID)
    assert backend.last("GetQuiz").metadata["authorization"] == f"Bearer {token}"


async def test_native_grpc_errors_keep_their_code_and_message(channel: grpc.aio.Channel) -> None:
    stub = quiz_pb2_grpc.QuizServiceStub(channel)

    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.GetQuiz(quiz_pb2.GetQuizRequest(quiz_id="NOT_FOUND"))

    assert error.value.code() is grpc.StatusCode.NOT_FOUND
    assert error.value.details() == "canned NOT_FOUND"


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 400),
        (grpc.StatusCode.FAILED_PRECONDITION, 400),
        (grpc.StatusCode.UNAUTHENTICATED, 401),
        (grpc.StatusCode.PERMISSION_DENIED, 403),
        (grpc.StatusCode.NOT_FOUND, 404),
        (grpc.StatusCode.ALREADY_EXISTS, 409),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
        (grpc.StatusCode.UNAVAILABLE, 503),
    ],
)
async def test_grpc_errors_become_http_statuses_with_json_bodies(
    http: httpx.AsyncClient, code: grpc.StatusCode, status: int
) -> None:
    response = await http.get(f"/v1/quizzes/{code.name}")

    assert assert_json_error(response, status, code) == f"canned {code.name}"


async def test_unknown_query_parameter_is_a_clear_400(
    http: httpx.AsyncClient, backend: Backend
) -> None:
    before = len(backend.calls)

    response = await http.get(f"/v1/quizzes/{QUIZ_ID}", params={"colour": "blue"})

    refused = assert_json_error(response, 400, grpc.StatusCode.INVALID_ARGUMENT, "MESSAGE_INVALID")
    assert "colour" in refused
    assert len(backend.calls) == before


async def test_malformed_json_body_is_a_json_400(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/quizzes", content=b'{"title": ', headers={"content-type": "application/json"}
    )

    assert_json_error(response, 400, grpc.StatusCode.INVALID_ARGUMENT, "MESSAGE_INVALID")


async def test_service_that_is_down_is_a_json_503(
    http: httpx.AsyncClient, channel: grpc.aio.Channel
) -> None:
    response = await http.get(f"/v1/quizzes/{QUIZ_ID}/leaderboard")
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await leaderboard_pb2_grpc.LeaderboardServiceStub(channel).GetLeaderboard(
            leaderboard_pb2.GetLeaderboardRequest(quiz_id=QUIZ_ID)
        )

    assert_json_error(response, 503, grpc.StatusCode.UNAVAILABLE, "DEPENDENCY_UNAVAILABLE")
    assert error.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_unknown_path_is_a_json_404(http: httpx.AsyncClient) -> None:
    response = await http.post("/v2/nothing", json={})

    assert_json_error(response, 404, grpc.StatusCode.NOT_FOUND, "ROUTE_NOT_FOUND")
