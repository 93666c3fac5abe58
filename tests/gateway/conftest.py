"""What the gateway tests share: an in-test backend with canned replies that records
what reached it, one real Envoy in front of it (rendered for these tests), the
clients that talk to that Envoy, and the token keys.

One Envoy serves the whole package. Per-client rate limits are keyed on the client
address, which this Envoy (one trusted proxy hop) reads from X-Forwarded-For, so
each limit test plays clients of its own."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import grpc
import httpx
import pytest
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from quizmesh.common.v1 import common_pb2, events_pb2
from quizmesh.quiz.v1 import quiz_pb2, quiz_pb2_grpc
from quizmesh.score.v1 import score_pb2, score_pb2_grpc
from quizmesh.stream.v1 import stream_pb2, stream_pb2_grpc

from devstack.gateway import EnvoyProcess, GatewaySettings, RateLimit, write_envoy_config
from devstack.infra import free_port
from services.identity.keys import ensure_dev_keys
from services.identity.tokens import Role, TokenIssuer
from services.mesh.context import Context
from services.stream import frames

QUIZ_ID = "QUIZ0001"
SERVICE_KEYS = ("quiz", "score", "leaderboard", "stream")
JOIN_BURST = 3
ANSWER_BURST = 2
MAX_BODY = 4096
STREAMS_PER_UPSTREAM_CONNECTION = 10
# The one origin this Envoy lets browsers call it from (CORS).
ALLOWED_ORIGIN = "https://allowed.example"
# GetQuiz of a quiz id named after a status code fails with that code.
FAILING = {code.name: code for code in grpc.StatusCode if code is not grpc.StatusCode.OK}


@dataclass
class Call:
    method: str
    request: Message
    metadata: dict[str, str | bytes]


@dataclass
class Backend:
    port: int = 0
    calls: list[Call] = field(default_factory=list)
    # WatchQuiz sends its second event only once a test sets this.
    second_event: asyncio.Event = field(default_factory=asyncio.Event)
    # The peer (Envoy's upstream connection) of every WatchLeaderboard call.
    watch_peers: list[str] = field(default_factory=list)
    # A call keyed here (quiz id, nickname) is refused UNAVAILABLE this many more times.
    unavailable_for: dict[str, int] = field(default_factory=dict)

    def record(self, method: str, request: Message, context: Context) -> None:
        metadata = dict(context.invocation_metadata() or ())
        self.calls.append(Call(method, request, metadata))

    def last(self, method: str) -> Call:
        return next(c for c in reversed(self.calls) if c.method == method)

    def count(self, method: str, key: str) -> int:
        """How many `method` calls reached the backend whose request names `key`."""
        return sum(1 for c in self.calls if c.method == method and key in str(c.request))

    async def refuse_while_unavailable(self, key: str, context: Context) -> None:
        if self.unavailable_for.get(key, 0) > 0:
            self.unavailable_for[key] -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"{key} is briefly away; retry")


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
        self, request: quiz_pb2.CreateQuizRequest, context: Context
    ) -> quiz_pb2.CreateQuizResponse:
        self.backend.record("CreateQuiz", request, context)
        quiz = canned_quiz(QUIZ_ID)
        quiz.title = request.title
        quiz.question_count = len(request.questions)
        return quiz_pb2.CreateQuizResponse(quiz=quiz)

    async def GetQuiz(
        self, request: quiz_pb2.GetQuizRequest, context: Context
    ) -> quiz_pb2.GetQuizResponse:
        self.backend.record("GetQuiz", request, context)
        await self.backend.refuse_while_unavailable(request.quiz_id, context)
        if request.quiz_id in FAILING:
            await context.abort(FAILING[request.quiz_id], f"canned {request.quiz_id}")
        return quiz_pb2.GetQuizResponse(quiz=canned_quiz(request.quiz_id))

    async def ListQuizzes(
        self, request: quiz_pb2.ListQuizzesRequest, context: Context
    ) -> quiz_pb2.ListQuizzesResponse:
        self.backend.record("ListQuizzes", request, context)
        return quiz_pb2.ListQuizzesResponse(quizzes=[canned_quiz(QUIZ_ID)])

    async def JoinQuiz(
        self, request: quiz_pb2.JoinQuizRequest, context: Context
    ) -> quiz_pb2.JoinQuizResponse:
        self.backend.record("JoinQuiz", request, context)
        await self.backend.refuse_while_unavailable(request.nickname, context)
        return quiz_pb2.JoinQuizResponse(
            player_id=f"player-{request.nickname}", player_token="token", quiz=canned_quiz(QUIZ_ID)
        )

    async def _unused(self, context: Context) -> NoReturn:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in this test")

    async def StartQuiz(
        self, request: quiz_pb2.StartQuizRequest, context: Context
    ) -> quiz_pb2.StartQuizResponse:
        return await self._unused(context)

    async def AdvanceQuestion(
        self, request: quiz_pb2.AdvanceQuestionRequest, context: Context
    ) -> quiz_pb2.AdvanceQuestionResponse:
        return await self._unused(context)

    async def CloseQuiz(
        self, request: quiz_pb2.CloseQuizRequest, context: Context
    ) -> quiz_pb2.CloseQuizResponse:
        return await self._unused(context)

    async def SetLobby(
        self, request: quiz_pb2.SetLobbyRequest, context: Context
    ) -> quiz_pb2.SetLobbyResponse:
        return await self._unused(context)

    async def GetQuizReport(
        self, request: quiz_pb2.GetQuizReportRequest, context: Context
    ) -> quiz_pb2.GetQuizReportResponse:
        return await self._unused(context)

    async def GetQuizReportCsv(
        self, request: quiz_pb2.GetQuizReportCsvRequest, context: Context
    ) -> quiz_pb2.GetQuizReportCsvResponse:
        return await self._unused(context)


class Score(score_pb2_grpc.ScoreServiceServicer):
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    async def SubmitAnswer(
        self, request: score_pb2.SubmitAnswerRequest, context: Context
    ) -> score_pb2.SubmitAnswerResponse:
        self.backend.record("SubmitAnswer", request, context)
        await self.backend.refuse_while_unavailable(request.quiz_id, context)
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
        self, request: score_pb2.GetPlayerScoreRequest, context: Context
    ) -> score_pb2.GetPlayerScoreResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in this test")
        raise AssertionError("unreachable")


class Stream(stream_pb2_grpc.StreamServiceServicer):
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    async def WatchQuiz(
        self, request: stream_pb2.WatchQuizRequest, context: Context
    ) -> AsyncIterator[stream_pb2.WatchQuizResponse]:
        self.backend.record("WatchQuiz", request, context)
        async for reply in self._quiz(request):
            yield reply

    async def WatchQuizSse(
        self, request: stream_pb2.WatchQuizSseRequest, context: Context
    ) -> AsyncIterator[stream_pb2.WatchQuizSseResponse]:
        """WatchQuiz's messages as the stream service frames them for browsers."""
        self.backend.record("WatchQuizSse", request, context)
        async for reply in self._quiz(request):
            yield stream_pb2.WatchQuizSseResponse.FromString(frames.quiz_frame(reply).sse())

    async def _quiz(
        self, request: stream_pb2.WatchQuizRequest | stream_pb2.WatchQuizSseRequest
    ) -> AsyncIterator[stream_pb2.WatchQuizResponse]:
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
        self, request: stream_pb2.WatchLeaderboardRequest, context: Context
    ) -> AsyncIterator[stream_pb2.WatchLeaderboardResponse]:
        # Which upstream connection of Envoy's carries this watch; then stay open.
        self.backend.record("WatchLeaderboard", request, context)
        self.backend.watch_peers.append(context.peer())
        yield stream_pb2.WatchLeaderboardResponse()
        await asyncio.Event().wait()

    async def WatchLeaderboardSse(
        self, request: stream_pb2.WatchLeaderboardSseRequest, context: Context
    ) -> AsyncIterator[stream_pb2.WatchLeaderboardSseResponse]:
        self.backend.record("WatchLeaderboardSse", request, context)
        empty = frames.board_frame(stream_pb2.WatchLeaderboardResponse())
        yield stream_pb2.WatchLeaderboardSseResponse.FromString(empty.sse())
        await asyncio.Event().wait()


@pytest.fixture(scope="package")
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


@pytest.fixture(scope="package")
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


@pytest.fixture(scope="package")
def web_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("web")
    (root / "index.html").write_text("<!doctype html><title>QuizMesh</title>\n")
    (root / "app.js").write_text("console.log('quizmesh');\n")
    return root


@pytest.fixture(scope="package")
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
        # Slow refills: nothing refills while the package's tests run.
        join_limit=RateLimit(burst=JOIN_BURST, refill=1, every_seconds=3600),
        answer_limit=RateLimit(burst=ANSWER_BURST, refill=1, every_seconds=3600),
        max_request_bytes=MAX_BODY,
        xff_num_trusted_hops=1,
        web_root=web_root,
        max_streams_per_upstream_connection=STREAMS_PER_UPSTREAM_CONNECTION,
        cors_origins=(ALLOWED_ORIGIN,),
    )
    config = write_envoy_config(folder / "envoy.yaml", settings)
    async with EnvoyProcess(config, log_file=folder / "envoy.log") as envoy:
        yield envoy


@pytest.fixture(scope="package")
async def http(envoy: EnvoyProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=envoy.base_url, timeout=10) as client:
        yield client


@pytest.fixture(scope="package")
async def channel(envoy: EnvoyProcess) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{envoy.port}") as channel:
        yield channel


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def new_client_address() -> str:
    """A client address of its own (X-Forwarded-For from the trusted proxy hop)."""
    return f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"


def assert_json_error(
    response: httpx.Response, status: int, code: grpc.StatusCode, reason: str | None = None
) -> str:
    """The body is {"code": <gRPC code>, "message": ..., "details": [...]}, with a
    google.rpc.ErrorInfo of `reason` among the details when one is given (Envoy's own
    replies; the canned backend here sends none); returns the message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert body["code"] == code.value[0], body
    assert isinstance(body["message"], str)
    assert body["message"], body
    if reason is not None:
        info = "type.googleapis.com/google.rpc.ErrorInfo"
        infos = [d for d in body.get("details", []) if d["@type"] == info]
        assert infos == [{"@type": info, "reason": reason, "domain": "quizmesh"}], body
    return str(body["message"])


def local_settings(keys: Keys, **overrides: Any) -> GatewaySettings:
    upstreams = {key: f"127.0.0.1:{50051 + i}" for i, key in enumerate(SERVICE_KEYS)}
    return GatewaySettings(upstreams=upstreams, jwks_path=keys.jwks, **overrides)
