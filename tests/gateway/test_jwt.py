"""JWT at the edge: valid tokens forwarded, bad or expired ones refused by Envoy with
JSON (or a plain gRPC status), verification cached no longer than the token lasts."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import cast

import google.rpc.error_details_pb2 as error_details_pb2
import grpc
import httpx
import pytest
from grpc_status import rpc_status
from quizmesh.quiz.v1 import quiz_pb2, quiz_pb2_grpc

from devstack.gateway import EnvoyProcess
from services.identity.tokens import Role
from tests.gateway.conftest import QUIZ_ID, Backend, Keys, assert_json_error, bearer


def tampered(token: str) -> str:
    """The same token claiming another subject: the signature no longer matches."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "mallory"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


async def test_request_without_token_reaches_the_backend_without_identity(
    http: httpx.AsyncClient, backend: Backend
) -> None:
    response = await http.get(f"/v1/quizzes/{QUIZ_ID}")

    assert response.status_code == 200
    assert "authorization" not in backend.last("GetQuiz").metadata


async def test_valid_token_is_forwarded_to_the_backend(
    http: httpx.AsyncClient, backend: Backend, keys: Keys
) -> None:
    token = keys.token("erin")

    response = await http.get(f"/v1/quizzes/{QUIZ_ID}", headers=bearer(token))

    assert response.status_code == 200
    assert backend.last("GetQuiz").metadata["authorization"] == f"Bearer {token}"


@pytest.mark.parametrize(
    ("kind", "status", "code", "reason"),
    [
        ("forged", 401, grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID"),
        ("expired", 401, grpc.StatusCode.UNAUTHENTICATED, "TOKEN_EXPIRED"),
        ("foreign key", 401, grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID"),
        ("not a JWT", 401, grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID"),
        ("wrong audience", 403, grpc.StatusCode.PERMISSION_DENIED, "TOKEN_INVALID"),
    ],
)
async def test_bad_tokens_are_refused_at_the_edge_with_json(
    http: httpx.AsyncClient,
    backend: Backend,
    keys: Keys,
    kind: str,
    status: int,
    code: grpc.StatusCode,
    reason: str,
) -> None:
    token = {
        "forged": tampered(keys.token()),
        "expired": keys.token(ttl=-120),  # beyond Envoy's 60 s clock skew
        "foreign key": keys.stranger.issue(Role.HOST, "alice", 600),
        "not a JWT": "not.a.jwt",
        "wrong audience": keys.elsewhere.issue(Role.HOST, "alice", 600),
    }[kind]
    before = len(backend.calls)

    response = await http.get(f"/v1/quizzes/{QUIZ_ID}", headers=bearer(token))

    assert_json_error(response, status, code, reason)
    assert len(backend.calls) == before


async def test_expired_token_says_so(http: httpx.AsyncClient, keys: Keys) -> None:
    response = await http.get(f"/v1/quizzes/{QUIZ_ID}", headers=bearer(keys.token(ttl=-120)))

    refused = assert_json_error(response, 401, grpc.StatusCode.UNAUTHENTICATED, "TOKEN_EXPIRED")
    assert "expired" in refused


async def jwt_cache_hits(envoy: EnvoyProcess) -> int:
    async with httpx.AsyncClient(base_url=envoy.admin_url, timeout=5) as admin:
        stats = (await admin.get("/stats", params={"filter": "jwt_cache_hit"})).text
    return sum(int(line.rsplit(":", 1)[1]) for line in stats.splitlines() if ":" in line)


async def test_envoy_verifies_a_token_once_yet_refuses_it_once_it_expires(
    envoy: EnvoyProcess, http: httpx.AsyncClient, backend: Backend, keys: Keys
) -> None:
    # Expired 55 s ago: Envoy's 60 s clock skew still lets it through for 5 s.
    token = keys.token("erin", ttl=-55)
    hits = await jwt_cache_hits(envoy)

    first = await http.get(f"/v1/quizzes/{QUIZ_ID}", headers=bearer(token))
    again = await http.get(f"/v1/quizzes/{QUIZ_ID}", headers=bearer(token))
    cached = await jwt_cache_hits(envoy) - hits
    await asyncio.sleep(7)
    before = len(backend.calls)
    expired = await http.get(f"/v1/quizzes/{QUIZ_ID}", headers=bearer(token))

    assert (first.status_code, again.status_code) == (200, 200)
    assert cached == 1  # the second request was not verified again
    refused = assert_json_error(expired, 401, grpc.StatusCode.UNAUTHENTICATED, "TOKEN_EXPIRED")
    assert "expired" in refused
    assert len(backend.calls) == before  # refused at the edge, cache or not


async def test_native_grpc_with_bad_token_is_unauthenticated(
    channel: grpc.aio.Channel, keys: Keys
) -> None:
    stub = quiz_pb2_grpc.QuizServiceStub(channel)

    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.GetQuiz(
            quiz_pb2.GetQuizRequest(quiz_id=QUIZ_ID),
            metadata=tuple(bearer(tampered(keys.token())).items()),
        )

    assert error.value.code() is grpc.StatusCode.UNAUTHENTICATED
    details = error.value.details()
    assert details is not None
    assert not details.startswith("{")  # plain text for gRPC clients


@pytest.mark.parametrize("where", ["query", "header"])
async def test_a_refused_token_is_never_echoed_back(
    http: httpx.AsyncClient, keys: Keys, where: str
) -> None:
    # Envoy's jwt_authn names the request URL as the realm of WWW-Authenticate:
    # with ?access_token= (EventSource cannot set headers) that is the token itself.
    token = keys.token(ttl=-120)
    path = f"/v1/quizzes/{QUIZ_ID}/events:watch"
    if where == "query":
        response = await http.get(path, params={"access_token": token})
    else:
        response = await http.get(path, headers=bearer(token))

    assert_json_error(response, 401, grpc.StatusCode.UNAUTHENTICATED, "TOKEN_EXPIRED")
    assert token not in str(response.headers)
    assert token.split(".")[1] not in response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "access_token" not in response.headers["www-authenticate"]


async def test_replies_that_are_no_token_refusal_carry_no_www_authenticate(
    http: httpx.AsyncClient,
) -> None:
    response = await http.post("/v2/nothing", json={})

    assert response.status_code == 404
    assert "www-authenticate" not in response.headers


async def test_native_grpc_refusals_at_the_edge_carry_their_reason(
    channel: grpc.aio.Channel, keys: Keys
) -> None:
    stub = quiz_pb2_grpc.QuizServiceStub(channel)
    reasons = {}
    for kind, token in {"expired": keys.token(ttl=-120), "forged": tampered(keys.token())}.items():
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.GetQuiz(
                quiz_pb2.GetQuizRequest(quiz_id=QUIZ_ID), metadata=tuple(bearer(token).items())
            )
        # grpc_status reads an aio error as it reads a sync call (code, details and
        # trailing metadata), and checks that the details' status agrees with them.
        status = rpc_status.from_call(cast(grpc.Call, error.value))
        assert status is not None, kind
        assert status.code == grpc.StatusCode.UNAUTHENTICATED.value[0]
        info = error_details_pb2.ErrorInfo()
        assert status.details[0].Unpack(info), status
        reasons[kind] = (info.domain, info.reason)

    assert reasons == {
        "expired": ("quizmesh", "TOKEN_EXPIRED"),
        "forged": ("quizmesh", "TOKEN_INVALID"),
    }
