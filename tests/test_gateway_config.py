"""The rendered Envoy config, through a real Envoy, in front of a small in-test backend
that implements a few RPCs of the contract with canned replies and records the
requests and metadata that reached it.

One Envoy serves the whole module. Per-client rate limits are keyed on the client
address, which this Envoy (one trusted proxy hop) reads from X-Forwarded-For, so
each limit test plays clients of its own.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from quizmesh.common.v1 import common_pb2, events_pb2
from quizmesh.leaderboard.v1 import leaderboard_pb2, leaderboard_pb2_grpc
from quizmesh.quiz.v1 import quiz_pb2, quiz_pb2_grpc
from quizmesh.score.v1 import score_pb2, score_pb2_grpc
from quizmesh.stream.v1 import stream_pb2, stream_pb2_grpc

from devstack.gateway import (
    EnvoyProcess,
    GatewaySettings,
    RateLimit,
    envoy_binary,
    read_services,
    render_envoy_config,
    write_envoy_config,
)
from devstack.infra import free_port
from services.identity.keys import ensure_dev_keys
from services.identity.tokens import Role, TokenIssuer

QUIZ_ID = "QUIZ0001"
SERVICE_KEYS = ("quiz", "score", "leaderboard", "stream")
JOIN_BURST = 3
ANSWER_BURST = 2
MAX_BODY = 4096
STREAMS_PER_UPSTREAM_CONNECTION = 10
# GetQuiz of a quiz id named after a status code fails with that code.
FAILING = {code.name: code for code in grpc.StatusCode if code is not grpc.StatusCode.OK}

# --- the in-test backend -------------------------------------------------------------------


@dataclass
class Call:
    method: str
    request: Message
    metadata: dict[str, str]


@dataclass
class Backend:
    port: int = 0
    calls: list[Call] = field(default_factory=list)
    # WatchQuiz sends its second event only once a test sets this.
    second_event: asyncio.Event = field(default_factory=asyncio.Event)
    # The peer (Envoy's upstream connection) of every WatchLeaderboard call.
    watch_peers: list[str] = field(default_factory=list)

    def record(self, method: str, request: Message, context: grpc.aio.ServicerContext) -> None:
        metadata = {m.key: m.value for m in context.invocation_metadata() or ()}
        self.calls.append(Call(method, request, metadata))

    def last(self, method: str) -> Call:
        return next(c for c in reversed(self.calls) if c.method == method)


def canned_quiz(quiz_id: str) -> quiz_pb2.Quiz:
    return quiz_pb2.Quiz(
        quiz_id=quiz_id,
        title="Capitals",
        host="alice",
        state=common_pb2.QUIZ_STATE_OPEN,
        question_count=2,
        current_question=-1,
        player_count=0,  # zero: still printed (always_print_primitive_fields)
        create_time=Timestamp(seconds=1_700_000_000),
    )


class Quiz(quiz_pb2_grpc.QuizServiceServicer):
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    async def CreateQuiz(
        self, request: quiz_pb2.CreateQuizRequest, context: grpc.aio.ServicerContext
    ) -> quiz_pb2.CreateQuizResponse:
        self.backend.record("CreateQuiz", request, context)
        quiz = canned_quiz(QUIZ_ID)
        quiz.title = request.title
        quiz.question_count = len(request.questions)
        return quiz_pb2.CreateQuizResponse(quiz=quiz)

    async def GetQuiz(
        self, request: quiz_pb2.GetQuizRequest, context: grpc.aio.ServicerContext
    ) -> quiz_pb2.GetQuizResponse:
        self.backend.record("GetQuiz", request, context)
        if request.quiz_id in FAILING:
            await context.abort(FAILING[request.quiz_id], f"canned {request.quiz_id}")
        return quiz_pb2.GetQuizResponse(quiz=canned_quiz(request.quiz_id))

    async def ListQuizzes(
        self, request: quiz_pb2.ListQuizzesRequest, context: grpc.aio.ServicerContext
    ) -> quiz_pb2.ListQuizzesResponse:
        self.backend.record("ListQuizzes", request, context)
        return quiz_pb2.ListQuizzesResponse(quizzes=[canned_quiz(QUIZ_ID)])

    async def JoinQuiz(
        self, request: quiz_pb2.JoinQuizRequest, context: grpc.aio.ServicerContext
    ) -> quiz_pb2.JoinQuizResponse:
        self.backend.record("JoinQuiz", request, context)
        return quiz_pb2.JoinQuizResponse(
            player_id=f"player-{request.nickname}", player_token="token", quiz=canned_quiz(QUIZ_ID)
        )

    async def _unused(self, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in this test")

    async def StartQuiz(
        self, request: quiz_pb2.StartQuizRequest, context: grpc.aio.ServicerContext
    ) -> quiz_pb2.StartQuizResponse:
        return await self._unused(context)  # type: ignore[no-any-return]

    async def AdvanceQuestion(
        self, request: quiz_pb2.AdvanceQuestionRequest, context: grpc.aio.ServicerContext
    ) -> quiz_pb2.AdvanceQuestionResponse:
        return await self._unused(context)  # type: ignore[no-any-return]

    async def CloseQuiz(
        self, request: quiz_pb2.CloseQuizRequest, context: grpc.aio.ServicerContext
    ) -> quiz_pb2.CloseQuizResponse:
        return await self._unused(context)  # type: ignore[no-any-return]


class Score(score_pb2_grpc.ScoreServiceServicer):
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    async def SubmitAnswer(
        self, request: score_pb2.SubmitAnswerRequest, context: grpc.aio.ServicerContext
    ) -> score_pb2.SubmitAnswerResponse:
        self.backend.record("SubmitAnswer", request, context)
        return score_pb2.SubmitAnswerResponse(
            result=score_pb2.AnswerResult(
                question_index=request.question_index,
                choice_index=request.choice_index,
                correct=True,
                points_awarded=900,
            ),
            total_score=900,
        )

    async def GetPlayerScore(
        self, request: score_pb2.GetPlayerScoreRequest, context: grpc.aio.ServicerContext
    ) -> score_pb2.GetPlayerScoreResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in this test")
        raise AssertionError("unreachable")


class Stream(stream_pb2_grpc.StreamServiceServicer):
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    async def WatchQuiz(
        self, request: stream_pb2.WatchQuizRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[stream_pb2.WatchQuizResponse]:
        self.backend.record("WatchQuiz", request, context)
        yield stream_pb2.WatchQuizResponse(
            event=events_pb2.QuizEvent(
                quiz_id=request.quiz_id,
                sequence=1,
                quiz_started=events_pb2.QuizStarted(question_count=2),
            )
        )
        await self.backend.second_event.wait()
        yield stream_pb2.WatchQuizResponse(
            event=events_pb2.QuizEvent(
                quiz_id=request.quiz_id,
                sequence=2,
                quiz_closed=events_pb2.QuizClosed(reason=events_pb2.CLOSE_REASON_HOST),
            )
        )

    async def WatchLeaderboard(
        self, request: stream_pb2.WatchLeaderboardRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[stream_pb2.WatchLeaderboardResponse]:
        # Which upstream connection of Envoy's carries this watch; then stay open.
        self.backend.record("WatchLeaderboard", request, context)
        self.backend.watch_peers.append(context.peer())
        yield stream_pb2.WatchLeaderboardResponse()
        await asyncio.Event().wait()


# --- fixtures: backend -> Envoy -> clients -------------------------------------------------


@pytest.fixture(scope="module")
async def backend() -> AsyncIterator[Backend]:
    backend = Backend()
    server = grpc.aio.server()
    quiz_pb2_grpc.add_QuizServiceServicer_to_server(Quiz(backend), server)
    score_pb2_grpc.add_ScoreServiceServicer_to_server(Score(backend), server)
    stream_pb2_grpc.add_StreamServiceServicer_to_server(Stream(backend), server)
    backend.port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield backend
    finally:
        await server.stop(None)


@dataclass(frozen=True)
class Keys:
    issuer: TokenIssuer
    # Same issuer and audience, but a key the gateway's JWKS does not have.
    stranger: TokenIssuer
    # Our key, but tokens meant for another audience.
    elsewhere: TokenIssuer
    jwks: Path

    def token(self, subject: str = "alice", role: Role = Role.HOST, ttl: int = 600) -> str:
        return self.issuer.issue(role, subject, ttl)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    ours, theirs = tmp_path_factory.mktemp("keys"), tmp_path_factory.mktemp("stranger")
    for folder in (ours, theirs):
        ensure_dev_keys(folder / "signing-key.pem", folder / "jwks.json")
    return Keys(
        issuer=TokenIssuer.from_file(ours / "signing-key.pem", "quizmesh", "quizmesh"),
        stranger=TokenIssuer.from_file(theirs / "signing-key.pem", "quizmesh", "quizmesh"),
        elsewhere=TokenIssuer.from_file(ours / "signing-key.pem", "quizmesh", "elsewhere"),
        jwks=ours / "jwks.json",
    )


@pytest.fixture(scope="module")
def web_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("web")
    (root / "index.html").write_text("<!doctype html><title>QuizMesh</title>\n")
    (root / "app.js").write_text("console.log('quizmesh');\n")
    return root


@pytest.fixture(scope="module")
async def envoy(
    backend: Backend, keys: Keys, web_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[EnvoyProcess]:
    folder = tmp_path_factory.mktemp("envoy")
    upstream, down = f"127.0.0.1:{backend.port}", f"127.0.0.1:{free_port()}"
    settings = GatewaySettings(
        # Nothing listens for the leaderboard service: a service that is down.
        upstreams={**dict.fromkeys(SERVICE_KEYS, upstream), "leaderboard": down},
        listen_port=0,
        listen_address="127.0.0.1",
        admin_port=0,
        jwks_path=keys.jwks,
        # Slow refills: nothing refills while the module runs.
        join_limit=RateLimit(burst=JOIN_BURST, refill=1, every_seconds=3600),
        answer_limit=RateLimit(burst=ANSWER_BURST, refill=1, every_seconds=3600),
        max_request_bytes=MAX_BODY,
        xff_num_trusted_hops=1,
        web_root=web_root,
        max_streams_per_upstream_connection=STREAMS_PER_UPSTREAM_CONNECTION,
    )
    config = write_envoy_config(folder / "envoy.yaml", settings)
    async with EnvoyProcess(config, log_file=folder / "envoy.log") as envoy:
        yield envoy


@pytest.fixture(scope="module")
async def http(envoy: EnvoyProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=envoy.base_url, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
async def channel(envoy: EnvoyProcess) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{envoy.port}") as channel:
        yield channel


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def new_client_address() -> str:
    """A client address of its own (X-Forwarded-For from the trusted proxy hop)."""
    return f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"


def assert_json_error(response: httpx.Response, status: int, code: grpc.StatusCode) -> str:
    """The body is {"code": <gRPC code>, "message": ...}; returns the message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert body["code"] == code.value[0], body
    assert isinstance(body["message"], str)
    assert body["message"], body
    return str(body["message"])


# --- the rendered config -----------------------------------------------------------------


def local_settings(keys: Keys, **overrides: Any) -> GatewaySettings:
    upstreams = {key: f"127.0.0.1:{50051 + i}" for i, key in enumerate(SERVICE_KEYS)}
    return GatewaySettings(upstreams=upstreams, jwks_path=keys.jwks, **overrides)


def transcoder(config: dict[str, Any]) -> dict[str, Any]:
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    filters = manager["typed_config"]["http_filters"]
    return next(f for f in filters if f["name"] == "envoy.filters.http.grpc_json_transcoder")


def test_transcoder_and_clusters_come_from_the_contract(keys: Keys) -> None:
    config = yaml.safe_load(render_envoy_config(local_settings(keys)))

    assert transcoder(config)["typed_config"]["services"] == read_services()
    assert [c["name"] for c in config["static_resources"]["clusters"]] == [
        "leaderboard",
        "quiz",
        "score",
        "stream",
    ]
    assert "quizmesh" not in config  # the template's generator section is consumed


def test_rendering_refuses_a_service_without_an_upstream(keys: Keys) -> None:
    settings = GatewaySettings(upstreams={"quiz": "127.0.0.1:1"}, jwks_path=keys.jwks)

    with pytest.raises(ValueError, match=r"no upstream address for quizmesh\.leaderboard"):
        render_envoy_config(settings)


async def test_rendered_config_is_valid_and_uses_no_deprecated_fields(
    keys: Keys, tmp_path: Path
) -> None:
    config = write_envoy_config(tmp_path / "envoy.yaml", local_settings(keys, web_root=tmp_path))
    validate = await asyncio.create_subprocess_exec(
        str(envoy_binary()),
        *("--mode", "validate", "-c", str(config)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output = (await validate.communicate())[0].decode()

    assert validate.returncode == 0, output
    assert "deprecated" not in output.lower(), output


# --- transcoding -------------------------------------------------------------------------


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
        quiz_pb2.GetQuizRequest(quiz_id=QUIZ_ID), metadata=bearer(token).items()
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

    assert "colour" in assert_json_error(response, 400, grpc.StatusCode.INVALID_ARGUMENT)
    assert len(backend.calls) == before


async def test_malformed_json_body_is_a_json_400(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/quizzes", content=b'{"title": ', headers={"content-type": "application/json"}
    )

    assert_json_error(response, 400, grpc.StatusCode.INVALID_ARGUMENT)


async def test_service_that_is_down_is_a_json_503(
    http: httpx.AsyncClient, channel: grpc.aio.Channel
) -> None:
    response = await http.get(f"/v1/quizzes/{QUIZ_ID}/leaderboard")
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await leaderboard_pb2_grpc.LeaderboardServiceStub(channel).GetLeaderboard(
            leaderboard_pb2.GetLeaderboardRequest(quiz_id=QUIZ_ID)
        )

    assert_json_error(response, 503, grpc.StatusCode.UNAVAILABLE)
    assert error.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_unknown_path_is_a_json_404(http: httpx.AsyncClient) -> None:
    response = await http.post("/v2/nothing", json={})

    assert_json_error(response, 404, grpc.StatusCode.NOT_FOUND)


# --- server streaming as SSE -------------------------------------------------------------


async def test_watch_streams_server_sent_events_one_by_one_with_the_query_token(
    http: httpx.AsyncClient, backend: Backend, keys: Keys
) -> None:
    token = keys.token("dave", Role.PLAYER)
    backend.second_event.clear()
    url = f"/v1/quizzes/{QUIZ_ID}/events:watch"

    async with http.stream("GET", url, params={"access_token": token}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = (
            json.loads(line.removeprefix("data:"))
            async for line in response.aiter_lines()
            if line.startswith("data:")
        )
        # The backend holds the second event back until the first one arrived.
        first = await asyncio.wait_for(anext(events), timeout=5)
        backend.second_event.set()
        second = await asyncio.wait_for(anext(events), timeout=5)

    assert first["event"]["sequence"] == "1"  # int64 is a JSON string
    assert first["event"]["quiz_started"] == {"question_count": 2}
    assert second["event"]["quiz_closed"] == {"reason": "CLOSE_REASON_HOST"}
    request = backend.last("WatchQuiz").request
    assert request == stream_pb2.WatchQuizRequest(quiz_id=QUIZ_ID, access_token=token)


async def test_watch_with_a_bad_query_token_is_refused_at_the_edge(
    http: httpx.AsyncClient, keys: Keys
) -> None:
    token = keys.stranger.issue(Role.PLAYER, "mallory", 600, quiz_id=QUIZ_ID)

    response = await http.get(f"/v1/quizzes/{QUIZ_ID}/events:watch", params={"access_token": token})

    assert_json_error(response, 401, grpc.StatusCode.UNAUTHENTICATED)


async def test_native_grpc_watch_streams_messages(
    channel: grpc.aio.Channel, backend: Backend
) -> None:
    backend.second_event.set()
    stub = stream_pb2_grpc.StreamServiceStub(channel)

    replies = [r async for r in stub.WatchQuiz(stream_pb2.WatchQuizRequest(quiz_id=QUIZ_ID))]

    assert [r.event.sequence for r in replies] == [1, 2]


async def test_many_watches_are_spread_over_several_upstream_connections(
    channel: grpc.aio.Channel, backend: Backend
) -> None:
    """One client connection's watches reach the service over several of Envoy's
    connections, so that SO_REUSEPORT workers (QUIZMESH_PROCESSES) share them."""
    stub = stream_pb2_grpc.StreamServiceStub(channel)
    watches = 3 * STREAMS_PER_UPSTREAM_CONNECTION
    calls = [
        stub.WatchLeaderboard(stream_pb2.WatchLeaderboardRequest(quiz_id=QUIZ_ID))
        for _ in range(watches)
    ]
    try:
        for call in calls:
            await call.read()  # each watch is open at the service

        assert len(backend.watch_peers) == watches
        assert len(set(backend.watch_peers)) >= 3, backend.watch_peers
    finally:
        for call in calls:
            call.cancel()


async def test_access_log_is_json_and_never_records_tokens(
    http: httpx.AsyncClient, envoy: EnvoyProcess, keys: Keys
) -> None:
    token = keys.token("frank", Role.PLAYER)
    # A quiz id of its own: other tests' watches end (and are logged) at any time.
    watch_path = "/v1/quizzes/ACCESSLOG/events:watch"
    await http.get(watch_path, params={"access_token": "x.y.z"})
    await http.get(f"/v1/quizzes/{QUIZ_ID}", headers=bearer(token))
    assert envoy.log_file is not None

    entries: list[dict[str, Any]] = []
    for _ in range(100):  # Envoy flushes its access log about once a second
        lines = envoy.log_file.read_text().splitlines()
        entries = [json.loads(line) for line in lines if line.startswith("{")]
        if any(e["path"] == watch_path for e in entries):
            break
        await asyncio.sleep(0.05)

    watch = [e for e in entries if e["path"] == watch_path]
    assert len(watch) == 1, entries
    assert watch[-1]["status"] == 401
    assert {"time", "client", "method", "rpc", "grpc_status", "duration_ms"} <= watch[-1].keys()
    log = envoy.log_file.read_text()
    assert "x.y.z" not in log
    assert token not in log


# --- JWT at the edge ---------------------------------------------------------------------


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
    ("kind", "status", "code"),
    [
        ("forged", 401, grpc.StatusCode.UNAUTHENTICATED),
        ("expired", 401, grpc.StatusCode.UNAUTHENTICATED),
        ("foreign key", 401, grpc.StatusCode.UNAUTHENTICATED),
        ("not a JWT", 401, grpc.StatusCode.UNAUTHENTICATED),
        ("wrong audience", 403, grpc.StatusCode.PERMISSION_DENIED),
    ],
)
async def test_bad_tokens_are_refused_at_the_edge_with_json(
    http: httpx.AsyncClient,
    backend: Backend,
    keys: Keys,
    kind: str,
    status: int,
    code: grpc.StatusCode,
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

    assert_json_error(response, status, code)
    assert len(backend.calls) == before


async def test_expired_token_says_so(http: httpx.AsyncClient, keys: Keys) -> None:
    response = await http.get(f"/v1/quizzes/{QUIZ_ID}", headers=bearer(keys.token(ttl=-120)))

    assert "expired" in assert_json_error(response, 401, grpc.StatusCode.UNAUTHENTICATED)


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
    assert "expired" in assert_json_error(expired, 401, grpc.StatusCode.UNAUTHENTICATED)
    assert len(backend.calls) == before  # refused at the edge, cache or not


async def test_native_grpc_with_bad_token_is_unauthenticated(
    channel: grpc.aio.Channel, keys: Keys
) -> None:
    stub = quiz_pb2_grpc.QuizServiceStub(channel)

    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.GetQuiz(
            quiz_pb2.GetQuizRequest(quiz_id=QUIZ_ID),
            metadata=bearer(tampered(keys.token())).items(),
        )

    assert error.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert not error.value.details().startswith("{")  # plain text for gRPC clients


# --- rate limits -------------------------------------------------------------------------


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
    message = assert_json_error(refused, 429, grpc.StatusCode.RESOURCE_EXHAUSTED)
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
    assert_json_error(refused, 429, grpc.StatusCode.RESOURCE_EXHAUSTED)
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


# --- request size ------------------------------------------------------------------------


async def test_body_over_the_limit_is_a_json_413(
    http: httpx.AsyncClient, backend: Backend, keys: Keys
) -> None:
    before = len(backend.calls)

    response = await http.post(
        "/v1/quizzes", json={"title": "x" * MAX_BODY}, headers=bearer(keys.token())
    )

    message = assert_json_error(response, 413, grpc.StatusCode.RESOURCE_EXHAUSTED)
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


# --- the web client ----------------------------------------------------------------------


async def test_web_root_is_served_beside_the_api(http: httpx.AsyncClient) -> None:
    index = await http.get("/")
    script = await http.get("/app.js")

    assert index.status_code == 200
    assert "<title>QuizMesh</title>" in index.text
    assert index.headers["content-type"].startswith("text/html")
    assert script.headers["content-type"].startswith("text/javascript")


async def test_missing_file_is_a_404(http: httpx.AsyncClient) -> None:
    response = await http.get("/missing.png")

    assert response.status_code == 404


# --- Prometheus stats --------------------------------------------------------------------


def test_stats_listener_needs_a_fixed_admin_port(keys: Keys) -> None:
    assert "stats" not in render_envoy_config(local_settings(keys))
    with pytest.raises(ValueError, match="fixed admin port"):
        local_settings(keys, admin_port=0, stats_port=9468)


async def test_stats_port_serves_prometheus_stats_and_nothing_else_of_the_admin(
    backend: Backend, keys: Keys, tmp_path: Path
) -> None:
    settings = GatewaySettings(
        upstreams=dict.fromkeys(SERVICE_KEYS, f"127.0.0.1:{backend.port}"),
        listen_port=0,
        listen_address="127.0.0.1",
        # The stats listener forwards to the admin, so the admin port must be known.
        admin_port=free_port(),
        stats_port=0,
        jwks_path=keys.jwks,
    )
    config = write_envoy_config(tmp_path / "envoy.yaml", settings)
    async with (
        EnvoyProcess(config, log_file=tmp_path / "envoy.log") as envoy,
        httpx.AsyncClient(base_url=envoy.base_url, timeout=10) as http,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{envoy.stats_port}", timeout=10) as stats,
    ):
        assert envoy.stats_port not in (None, 0, envoy.port)
        assert (await http.get(f"/v1/quizzes/{QUIZ_ID}")).status_code == 200

        scrape = await stats.get("/stats/prometheus")
        assert scrape.status_code == 200, scrape.text
        assert scrape.headers["content-type"].startswith("text/plain")
        assert "# TYPE envoy_cluster_upstream_rq_total counter" in scrape.text
        requests = re.search(
            r'^envoy_cluster_upstream_rq_total\{envoy_cluster_name="quiz"\} (\d+)$',
            scrape.text,
            re.MULTILINE,
        )
        assert requests is not None, scrape.text
        assert int(requests[1]) >= 1

        # Nothing else of the admin: no config (keys, paths), no shutdown, no changes.
        for method, path in [
            ("GET", "/config_dump"),
            ("GET", "/quitquitquit"),
            ("POST", "/quitquitquit"),
            ("POST", "/healthcheck/fail"),
            ("POST", "/runtime_modify?quizmesh.ratelimit.join.enabled=0"),
            ("POST", "/stats/prometheus"),
            ("GET", "/stats"),
            ("GET", "/"),
            ("GET", "/stats/prometheus/../config_dump"),
        ]:
            answer = await stats.request(method, path)
            assert answer.status_code == 404, (method, path, answer.text)
            assert "configuration" not in answer.text.lower()
        async with httpx.AsyncClient(base_url=envoy.admin_url, timeout=5) as admin:
            assert (await admin.get("/ready")).text.strip() == "LIVE"
