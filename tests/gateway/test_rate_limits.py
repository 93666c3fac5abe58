"""Rate limits at the edge: joins per client address, answers per token subject (or
address without a token), over HTTP and native gRPC alike; other routes unlimited."""

from __future__ import annotations

import uuid

import grpc
import httpx
import pytest
from quizmesh.quiz.v1 import quiz_pb2, quiz_pb2_grpc

from services.identity.tokens import Role
from tests.gateway.conftest import (
    ANSWER_BURST,
    JOIN_BURST,
    QUIZ_ID,
    Keys,
    assert_json_error,
    bearer,
    new_client_address,
)


async def join(http: httpx.AsyncClient, client: str, nickname: str = "ann") -> httpx.Response:
    return await http.post(
        f"/v1/quizzes/{QUIZ_ID}:join",
        json={"nickname": nickname},
        headers={"x-forwarded-for": client},
    )


async def test_joins_are_limited_per_client_address(http: httpx.AsyncClient) -> None:
    client, neighbour = new_client_address(), new_client_address()

    allowed = [await join(http, client, f"n{i}") for i in range(JOIN_BURST)]
    refused = await join(http, client, "one-too-many")
    other = await join(http, neighbour)

    assert [r.status_code for r in allowed] == [200] * JOIN_BURST
    assert allowed[0].json()["player_id"] == "player-n0"
    message = assert_json_error(refused, 429, grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")
    assert "too many requests; retry after" in message
    assert refused.headers["retry-after"] == "3600"  # the bucket refills hourly here
    assert refused.headers["x-ratelimit-limit"] == str(JOIN_BURST)
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert other.status_code == 200


async def test_native_grpc_joins_share_the_rest_limit_and_get_resource_exhausted(
    http: httpx.AsyncClient, channel: grpc.aio.Channel
) -> None:
    client = new_client_address()
    stub = quiz_pb2_grpc.QuizServiceStub(channel)
    metadata = (("x-forwarded-for", client),)
    request = quiz_pb2.JoinQuizRequest(quiz_id=QUIZ_ID, nickname="bob")

    for _ in range(JOIN_BURST - 1):
        await stub.JoinQuiz(request, metadata=metadata)
    last_rest = await join(http, client)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.JoinQuiz(request, metadata=metadata)

    assert last_rest.status_code == 200
    assert error.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert ("retry-after", "3600") in tuple(error.value.initial_metadata() or ()) + tuple(
        error.value.trailing_metadata() or ()
    )


async def answer(http: httpx.AsyncClient, token: str | None, client: str) -> httpx.Response:
    headers = {"x-forwarded-for": client, **(bearer(token) if token else {})}
    return await http.post(
        f"/v1/quizzes/{QUIZ_ID}/answers",
        json={"question_index": 0, "choice_index": 1},
        headers=headers,
    )


async def test_answers_are_limited_per_token_subject(http: httpx.AsyncClient, keys: Keys) -> None:
    client = new_client_address()
    subject = f"p-{uuid.uuid4().hex[:8]}"
    player = keys.token(subject, Role.PLAYER)
    # Another player behind the same address (a classroom NAT) is not affected.
    classmate = keys.token(f"p-{uuid.uuid4().hex[:8]}", Role.PLAYER)

    allowed = [await answer(http, player, client) for _ in range(ANSWER_BURST)]
    refused = await answer(http, player, client)
    # A new token for the same subject, from elsewhere, shares the exhausted bucket.
    renewed = await answer(http, keys.token(subject, Role.PLAYER, ttl=900), new_client_address())
    other = await answer(http, classmate, client)

    assert [r.status_code for r in allowed] == [200] * ANSWER_BURST
    assert allowed[0].json()["result"]["points_awarded"] == 900
    assert_json_error(refused, 429, grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")
    assert refused.headers["retry-after"] == "3600"  # the bucket refills hourly here
    assert refused.headers["x-ratelimit-limit"] == str(ANSWER_BURST)
    assert renewed.status_code == 429
    assert other.status_code == 200


async def test_answers_without_token_are_limited_per_client_address(
    http: httpx.AsyncClient,
) -> None:
    client, neighbour = new_client_address(), new_client_address()

    allowed = [await answer(http, None, client) for _ in range(ANSWER_BURST)]
    refused = await answer(http, None, client)
    other = await answer(http, None, neighbour)

    assert [r.status_code for r in allowed] == [200] * ANSWER_BURST
    assert refused.status_code == 429
    assert other.status_code == 200


async def test_other_routes_are_not_rate_limited(http: httpx.AsyncClient) -> None:
    client = new_client_address()
    headers = {"x-forwarded-for": client}

    statuses = [
        (await http.get(f"/v1/quizzes/{QUIZ_ID}", headers=headers)).status_code
        for _ in range(JOIN_BURST * 3)
    ]

    assert statuses == [200] * (JOIN_BURST * 3)
