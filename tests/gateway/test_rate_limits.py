"""Rate limits at the edge, over HTTP and native gRPC alike: joins per client address
and per quiz; answers per token subject (or address without a token); every other
RPC per token subject, or per address without a token. No client-sent header picks
a bucket. The 429 says which limits apply, with a machine-readable reason."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
import yaml
from quizmesh.quiz.v1 import quiz_pb2, quiz_pb2_grpc

from devstack.gateway import (
    DESCRIPTOR_SET,
    EnvoyProcess,
    RateLimit,
    local_gateway,
    read_descriptor_services,
    read_services,
    render_envoy_config,
    write_envoy_config,
)
from services.identity.tokens import Role
from tests.gateway.conftest import (
    ANSWER_BURST,
    JOIN_BURST,
    QUIZ_ID,
    SERVICE_KEYS,
    Backend,
    Keys,
    assert_json_error,
    bearer,
    local_settings,
    new_client_address,
)

# The tight Envoy's budgets (hourly refills: nothing refills during a test).
QUIZ_JOIN_BURST = 4
CALL_BURST = 3
ANONYMOUS_CALL_BURST = 5


def hourly(burst: int) -> RateLimit:
    return RateLimit(burst=burst, refill=1, every_seconds=3600)


@pytest.fixture(scope="module")
async def tight_envoy(
    backend: Backend, keys: Keys, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[EnvoyProcess]:
    """An Envoy of this module's own in front of the canned backend, with small
    per-quiz and per-caller budgets (the package's Envoy keeps venue-sized ones, so
    that the other tests' calls from 127.0.0.1 are not refused)."""
    folder = tmp_path_factory.mktemp("tight-envoy")
    settings = local_gateway(
        dict.fromkeys(SERVICE_KEYS, f"127.0.0.1:{backend.port}"),
        keys.jwks,
        xff_num_trusted_hops=1,
        join_limit=hourly(1000),
        quiz_join_limit=hourly(QUIZ_JOIN_BURST),
        call_limit=hourly(CALL_BURST),
        anonymous_call_limit=hourly(ANONYMOUS_CALL_BURST),
    )
    config = write_envoy_config(folder / "envoy.yaml", settings)
    async with EnvoyProcess(config, log_file=folder / "envoy.log") as envoy:
        yield envoy


@pytest.fixture(scope="module")
async def tight(tight_envoy: EnvoyProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=tight_envoy.base_url, timeout=10) as client:
        yield client


async def join(
    http: httpx.AsyncClient, client: str, nickname: str = "ann", quiz_id: str = QUIZ_ID
) -> httpx.Response:
    return await http.post(
        f"/v1/quizzes/{quiz_id}:join",
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
    assert message == (
        "too many requests (joins: 3 at once, then 1 every 3600 s per client address, "
        "5000 at once, then 250/s per quiz); retry after the seconds in the Retry-After header"
    )
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


async def test_joins_are_limited_per_quiz_from_every_address_however_it_is_spelt(
    tight: httpx.AsyncClient,
) -> None:
    quiz, other_quiz = f"Q{uuid.uuid4().hex[:8].upper()}", f"Q{uuid.uuid4().hex[:8].upper()}"
    # The quiz service reads codes trimmed and in upper case: so does the limit.
    spellings = [quiz, quiz.lower(), f"%20{quiz}", quiz]

    allowed = [await join(tight, new_client_address(), f"n{i}", q) for i, q in enumerate(spellings)]
    refused = await join(tight, new_client_address(), "late", quiz)
    elsewhere = await join(tight, new_client_address(), "ann", other_quiz)

    assert [r.status_code for r in allowed] == [200] * QUIZ_JOIN_BURST
    assert_json_error(refused, 429, grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")
    assert refused.headers["x-ratelimit-limit"] == str(QUIZ_JOIN_BURST)
    assert elsewhere.status_code == 200


async def test_native_grpc_joins_count_against_the_quiz_of_their_body(
    tight: httpx.AsyncClient, tight_envoy: EnvoyProcess
) -> None:
    quiz = f"Q{uuid.uuid4().hex[:8].upper()}"
    async with grpc.aio.insecure_channel(f"127.0.0.1:{tight_envoy.port}") as channel:
        stub = quiz_pb2_grpc.QuizServiceStub(channel)
        for i in range(QUIZ_JOIN_BURST - 1):
            await stub.JoinQuiz(
                quiz_pb2.JoinQuizRequest(quiz_id=quiz.lower(), nickname=f"n{i}"),
                metadata=(("x-forwarded-for", new_client_address()),),
            )
        last_rest = await join(tight, new_client_address(), "rest", quiz)
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.JoinQuiz(
                # The nickname first: the quiz id is found wherever it is in the body.
                quiz_pb2.JoinQuizRequest(nickname="late", quiz_id=quiz),
                metadata=(("x-forwarded-for", new_client_address()),),
            )

    assert last_rest.status_code == 200
    assert error.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


async def answer(
    http: httpx.AsyncClient, token: str | None, client: str, **headers: str
) -> httpx.Response:
    return await http.post(
        f"/v1/quizzes/{QUIZ_ID}/answers",
        json={"question_index": 0, "choice_index": 1},
        headers={"x-forwarded-for": client, **(bearer(token) if token else {}), **headers},
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
    message = assert_json_error(refused, 429, grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")
    assert "answers: 2 at once, then 1 every 3600 s per player token" in message
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
    # An authorization header that is no bearer token makes no caller of it.
    disguised = await answer(http, None, client, authorization="Basic YWxpY2U6eA==")
    other = await answer(http, None, neighbour)

    assert [r.status_code for r in allowed] == [200] * ANSWER_BURST
    assert refused.status_code == 429
    assert disguised.status_code == 429
    assert other.status_code == 200


async def test_other_calls_are_limited_per_caller_not_per_address(
    tight: httpx.AsyncClient, keys: Keys
) -> None:
    hall = new_client_address()
    players = [keys.token(f"p-{uuid.uuid4().hex[:8]}", Role.PLAYER) for _ in range(8)]

    def get_quiz(token: str | None = None, client: str = hall) -> Any:
        headers = {"x-forwarded-for": client, **(bearer(token) if token else {})}
        return tight.get(f"/v1/quizzes/{QUIZ_ID}", headers=headers)

    # More players than the anonymous budget, one call each, from one address.
    players_calls = [await get_quiz(token) for token in players]
    anonymous = [await get_quiz() for _ in range(ANONYMOUS_CALL_BURST)]
    anonymous_refused = await get_quiz()
    one_player = [await get_quiz(players[0]) for _ in range(CALL_BURST - 1)]
    one_player_refused = await get_quiz(players[0])
    neighbour = await get_quiz(client=new_client_address())

    assert [r.status_code for r in players_calls] == [200] * len(players)
    assert [r.status_code for r in anonymous] == [200] * ANONYMOUS_CALL_BURST
    assert [r.status_code for r in one_player] == [200] * (CALL_BURST - 1)
    for refused in (anonymous_refused, one_player_refused):
        message = assert_json_error(
            refused, 429, grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED"
        )
        assert message.startswith(
            "too many requests (calls of this RPC: 3 at once, then 1 every 3600 s per token "
            "subject, 5 at once, then 1 every 3600 s per client address without a token)"
        )
    assert anonymous_refused.headers["x-ratelimit-limit"] == str(ANONYMOUS_CALL_BURST)
    assert one_player_refused.headers["x-ratelimit-limit"] == str(CALL_BURST)
    assert neighbour.status_code == 200


async def test_watches_with_a_query_token_count_per_subject_not_per_address(
    tight: httpx.AsyncClient, keys: Keys
) -> None:
    hall = new_client_address()
    url = f"/v1/quizzes/{QUIZ_ID}/leaderboard:watch"
    players = [keys.token(f"p-{uuid.uuid4().hex[:8]}", Role.PLAYER) for _ in range(8)]

    async def open_watch(token: str | None) -> int:
        params = {"access_token": token} if token else {}
        async with tight.stream(
            "GET", url, params=params, headers={"x-forwarded-for": hall}
        ) as response:
            return response.status_code

    # EventSource sends no headers: the token rides in ?access_token=.
    players_watches = [await open_watch(token) for token in players]
    spectators = [await open_watch(None) for _ in range(ANONYMOUS_CALL_BURST + 1)]

    assert players_watches == [200] * len(players)
    assert spectators == [200] * ANONYMOUS_CALL_BURST + [429]


def test_every_rpc_of_the_contract_is_rate_limited(keys: Keys) -> None:
    config = yaml.safe_load(render_envoy_config(local_settings(keys)))
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    routes = manager["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    limited = {
        route["match"]["path"]
        for route in routes
        if "path" in route["match"]
        and "envoy.filters.http.local_ratelimit" in route.get("typed_per_filter_config", {})
    }

    assert limited == {
        f"/{service}/{method.name}"
        for service, described in read_descriptor_services(DESCRIPTOR_SET).items()
        if service in read_services()
        for method in described.method
    }
