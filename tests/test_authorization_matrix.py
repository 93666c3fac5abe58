"""Who may call what: every RPC x every kind of caller x every way in.

One table, `MATRIX`, holds the exact gRPC status each caller gets from each RPC
(docs/spec.md#authorization, made precise). Each cell runs

- directly against the service (`grpc`): the service verifies the token itself;
- native gRPC through Envoy (`envoy-grpc`) and HTTP/JSON through Envoy (`http`):
  Envoy's jwt_authn refuses a token that is present but invalid (expired, signed by
  another key, `alg: none`) with 401 / UNAUTHENTICATED before any service sees it.

Server streams (WatchQuiz, WatchLeaderboard) are checked on their first message or
their error, with the token in the `authorization` header and in the request's
`access_token` field (the query parameter over HTTP). Refused calls that would change
something are followed by a look at the state they would have changed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any, TypeAlias

import grpc
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf import json_format
from quizmesh.quiz.v1 import quiz_pb2, quiz_pb2_grpc
from quizmesh.score.v1 import score_pb2, score_pb2_grpc

from devstack.gateway import EnvoyProcess
from services.identity.tokens import Role
from tests.api import HTTP_STATUS, METHODS, SSE_FORM, Api, ApiError, GrpcApi, HttpApi
from tests.game import REFERENCE_QUIZ, Player, join
from tests.stack import Backends, Stack

Code: TypeAlias = grpc.StatusCode
OK = Code.OK
UNAUTH = Code.UNAUTHENTICATED
DENIED = Code.PERMISSION_DENIED

# The callers, relative to the quiz a call is about ("this quiz").
CALLERS = (
    "anonymous",  # no token at all
    "player",  # a player of this quiz (for GetPlayerScore: the player asked about)
    "fellow",  # another player of this quiz
    "outsider",  # a player of another quiz
    "host",  # the host of this quiz
    "other_host",  # a host, of another quiz
    "expired",  # validly signed, expired an hour ago (claims of an allowed caller)
    "foreign_key",  # claims of an allowed caller, signed by another key with our kid
    "alg_none",  # claims of an allowed caller, unsigned (`alg: none`) with our kid
)
BAD_TOKENS = ("expired", "foreign_key", "alg_none")


def row(*codes: Code) -> dict[str, Code]:
    assert len(codes) == len(CALLERS)
    return dict(zip(CALLERS, codes, strict=True))


# fmt: off
MATRIX: dict[str, dict[str, Code]] = {
    #                       anon    player  fellow  outsidr host    o_host  expired foreign alg_none
    "CreateQuiz":       row(UNAUTH, DENIED, DENIED, DENIED, OK,     OK,     UNAUTH, UNAUTH, UNAUTH),
    "GetQuiz":          row(OK,     OK,     OK,     OK,     OK,     OK,     UNAUTH, UNAUTH, UNAUTH),
    "ListQuizzes":      row(OK,     OK,     OK,     OK,     OK,     OK,     UNAUTH, UNAUTH, UNAUTH),
    "JoinQuiz":         row(OK,     OK,     OK,     OK,     OK,     OK,     UNAUTH, UNAUTH, UNAUTH),
    "StartQuiz":        row(UNAUTH, DENIED, DENIED, DENIED, OK,     DENIED, UNAUTH, UNAUTH, UNAUTH),
    "AdvanceQuestion":  row(UNAUTH, DENIED, DENIED, DENIED, OK,     DENIED, UNAUTH, UNAUTH, UNAUTH),
    "CloseQuiz":        row(UNAUTH, DENIED, DENIED, DENIED, OK,     DENIED, UNAUTH, UNAUTH, UNAUTH),
    "SetLobby":         row(UNAUTH, DENIED, DENIED, DENIED, OK,     DENIED, UNAUTH, UNAUTH, UNAUTH),
    "GetQuizReport":    row(UNAUTH, DENIED, DENIED, DENIED, OK,     DENIED, UNAUTH, UNAUTH, UNAUTH),
    "GetQuizReportCsv": row(UNAUTH, DENIED, DENIED, DENIED, OK,     DENIED, UNAUTH, UNAUTH, UNAUTH),
    "SubmitAnswer":     row(UNAUTH, OK,     OK,     DENIED, DENIED, DENIED, UNAUTH, UNAUTH, UNAUTH),
    "GetPlayerScore":   row(UNAUTH, OK,     DENIED, DENIED, OK,     DENIED, UNAUTH, UNAUTH, UNAUTH),
    "GetLeaderboard":   row(OK,     OK,     OK,     OK,     OK,     OK,     UNAUTH, UNAUTH, UNAUTH),
    "GetPlayerRank":    row(OK,     OK,     OK,     OK,     OK,     OK,     UNAUTH, UNAUTH, UNAUTH),
    "WatchQuiz":        row(OK,     OK,     OK,     OK,     OK,     OK,     UNAUTH, UNAUTH, UNAUTH),
    "WatchLeaderboard": row(OK,     OK,     OK,     OK,     OK,     OK,     UNAUTH, UNAUTH, UNAUTH),
    # Host accounts: credentials in the request, no token needed; one that is sent
    # must be valid, as on every other call.
    "SignUp":           row(OK,     OK,     OK,     OK,     OK,     OK,     UNAUTH, UNAUTH, UNAUTH),
    "SignIn":           row(OK,     OK,     OK,     OK,     OK,     OK,     UNAUTH, UNAUTH, UNAUTH),
    "RefreshSession":   row(OK,     OK,     OK,     OK,     OK,     OK,     UNAUTH, UNAUTH, UNAUTH),
    "SignOut":          row(OK,     OK,     OK,     OK,     OK,     OK,     UNAUTH, UNAUTH, UNAUTH),
    # A host's library: their own; "this quiz" is a library quiz of `host`.
    "CreateLibraryQuiz":    row(UNAUTH, DENIED, DENIED, DENIED, OK, OK,     UNAUTH, UNAUTH, UNAUTH),
    "ListLibraryQuizzes":   row(UNAUTH, DENIED, DENIED, DENIED, OK, OK,     UNAUTH, UNAUTH, UNAUTH),
    "GetLibraryQuiz":       row(UNAUTH, DENIED, DENIED, DENIED, OK, DENIED, UNAUTH, UNAUTH, UNAUTH),
    "UpdateLibraryQuiz":    row(UNAUTH, DENIED, DENIED, DENIED, OK, DENIED, UNAUTH, UNAUTH, UNAUTH),
    "DuplicateLibraryQuiz": row(UNAUTH, DENIED, DENIED, DENIED, OK, DENIED, UNAUTH, UNAUTH, UNAUTH),
    "DeleteLibraryQuiz":    row(UNAUTH, DENIED, DENIED, DENIED, OK, DENIED, UNAUTH, UNAUTH, UNAUTH),
    "PlayLibraryQuiz":      row(UNAUTH, DENIED, DENIED, DENIED, OK, DENIED, UNAUTH, UNAUTH, UNAUTH),
}
# fmt: on

STREAMS = ("WatchQuiz", "WatchLeaderboard")
TRANSPORTS = ("grpc", "envoy-grpc", "http")
ENVOY = ("envoy-grpc", "http")

# Which module quiz each RPC is asked about; refusals must leave it as it was.
RUNNING_TARGET = {"AdvanceQuestion", "CloseQuiz", "SubmitAnswer", "WatchQuiz"}
MATRIX_TITLE = "authz-matrix"
# The host account every SignIn cell signs in to.
ACCOUNT_PASSWORD = "matrix password 1"
SESSION_RPCS = ("RefreshSession", "SignOut")
LIBRARY_RPCS = tuple(rpc for rpc in MATRIX if "LibraryQuiz" in rpc)
LIBRARY_TITLE = "Library reference"


@dataclass
class World:
    """Fresh quizzes of this module and the people in them."""

    open_quiz: str  # OPEN, hosted by `host`
    running_quiz: str  # RUNNING, question 0 open for ten minutes, hosted by `host`
    other_quiz: str  # OPEN, hosted by `other_host`
    host: str
    other_host: str
    players: dict[str, dict[str, Player]]  # quiz id -> role -> player
    outsider: Player  # a player of `other_quiz`
    kid: str
    stack: Stack
    account_email: str
    library_quiz_id: str  # a library quiz of `host`

    async def library(self) -> tuple[Any, ...]:
        """What a library call may change: `library_quiz_id`'s view (None once
        deleted) and how many quizzes each host's library holds."""
        api = GrpcApi(self.stack.channels)
        issuer = self.stack.backends.issuer()
        token = issuer.issue(Role.HOST, self.host, 60)
        try:
            got = await api.call("GetLibraryQuiz", {"library_quiz_id": self.library_quiz_id}, token)
            view = got["library_quiz"]
        except ApiError:
            view = None
        counts = []
        for host in (self.host, self.other_host):
            listed = await api.call(
                "ListLibraryQuizzes", {"page_size": 100}, issuer.issue(Role.HOST, host, 60)
            )
            counts.append(len(listed["library_quizzes"]))
        return view, counts

    async def refresh_token(self) -> str:
        """A refresh token of a new session of the world's account."""
        signed_in = await GrpcApi(self.stack.channels).call(
            "SignIn", {"email": self.account_email, "password": ACCOUNT_PASSWORD}
        )
        return str(signed_in["session"]["refresh_token"])

    def quiz_for(self, rpc: str) -> str:
        return self.running_quiz if rpc in RUNNING_TARGET else self.open_quiz

    def token(self, caller: str, rpc: str, quiz_id: str) -> str | None:
        issuer = self.stack.backends.issuer()
        match caller:
            case "anonymous":
                return None
            case "player" | "fellow":
                return self.players[quiz_id][caller].token
            case "outsider":
                return self.outsider.token
            case "host":
                return issuer.issue(Role.HOST, self.host, 600)
            case "other_host":
                return issuer.issue(Role.HOST, self.other_host, 600)
        # Bad tokens carry the claims of a caller the RPC would let in.
        claims = self.allowed_claims(rpc, quiz_id)
        if caller == "expired":
            quiz = claims.get("quiz")
            return issuer.issue(Role(claims["role"]), claims["sub"], -3600, quiz_id=quiz)
        if caller == "foreign_key":
            return foreign_key_token(claims, self.kid)
        assert caller == "alg_none", caller
        return alg_none_token(claims, self.kid)

    def allowed_claims(self, rpc: str, quiz_id: str) -> dict[str, Any]:
        if rpc == "SubmitAnswer":  # a player of this quiz who never really answers
            ghost = self.players[quiz_id]["ghost"]
            return claims_of("player", ghost.player_id, quiz_id)
        return claims_of("host", self.host)

    async def quiz_view(self, quiz_id: str) -> dict[str, Any]:
        view = await GrpcApi(self.stack.channels).call("GetQuiz", {"quiz_id": quiz_id})
        return dict(view["quiz"])

    async def score_of(self, quiz_id: str, player: Player) -> tuple[int, int]:
        host = self.stack.backends.issuer().issue(Role.HOST, self.host, 60)
        other = self.stack.backends.issuer().issue(Role.HOST, self.other_host, 60)
        token = host if quiz_id != self.other_quiz else other
        score = await GrpcApi(self.stack.channels).call(
            "GetPlayerScore", {"quiz_id": quiz_id, "player_id": player.player_id}, token
        )
        return int(score["score"]), len(score["answers"])

    async def nicknames(self, quiz_id: str) -> set[str]:
        board = await GrpcApi(self.stack.channels).call(
            "GetLeaderboard", {"quiz_id": quiz_id, "page_size": 100}
        )
        assert not board["next_page_token"]
        return {e["nickname"] for e in board["entries"]}


def claims_of(role: str, subject: str, quiz_id: str | None = None) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": "quizmesh",
        "aud": "quizmesh",
        "sub": subject,
        "role": role,
        "iat": now,
        "exp": now + 600,
    }
    if quiz_id is not None:
        claims["quiz"] = quiz_id
    return claims


def b64url(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def alg_none_token(claims: dict[str, Any], kid: str) -> str:
    """An unsigned token naming our real key: only `alg` keeps it out."""
    return f"{b64url({'alg': 'none', 'typ': 'JWT', 'kid': kid})}.{b64url(claims)}."


def foreign_key_token(claims: dict[str, Any], kid: str) -> str:
    """Well-formed and ES256, naming our real key, but signed by a stranger's."""
    other = ec.generate_private_key(ec.SECP256R1())
    return jwt.encode(claims, other, algorithm="ES256", headers={"kid": kid})


def real_kid(backends: Backends) -> str:
    return str(json.loads(backends.jwks_file.read_text())["keys"][0]["kid"])


@dataclass
class Ways:
    """The three ways in, sharing the session's stack and gateway."""

    direct: GrpcApi
    envoy_grpc: GrpcApi
    http: HttpApi
    envoy_channel: grpc.aio.Channel

    def api(self, transport: str) -> Api:
        apis: dict[str, Api] = {
            "grpc": self.direct,
            "envoy-grpc": self.envoy_grpc,
            "http": self.http,
        }
        return apis[transport]


@pytest.fixture(scope="module")
async def ways(stack: Stack, gateway: EnvoyProcess) -> AsyncIterator[Ways]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}")
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        try:
            yield Ways(
                direct=GrpcApi(stack.channels),
                envoy_grpc=GrpcApi(dict.fromkeys(stack.channels, channel)),
                http=HttpApi(client),
                envoy_channel=channel,
            )
        finally:
            await channel.close()


@pytest.fixture(scope="module")
async def world(stack: Stack, backends: Backends) -> World:
    api = GrpcApi(stack.channels)
    tag = uuid.uuid4().hex[:6]
    host, other_host = f"authz-alice-{tag}", f"authz-bob-{tag}"
    issuer = backends.issuer()

    async def create(by: str) -> str:
        made = await api.call("CreateQuiz", REFERENCE_QUIZ, issuer.issue(Role.HOST, by, 600))
        return str(made["quiz"]["quiz_id"])

    open_quiz, running_quiz, other_quiz = (
        await create(host),
        await create(host),
        await create(other_host),
    )
    players = {
        quiz: {role: await join(api, quiz, role) for role in ("player", "fellow", "ghost")}
        for quiz in (open_quiz, running_quiz)
    }
    outsider = await join(api, other_quiz, "outsider")
    await api.call("StartQuiz", {"quiz_id": running_quiz}, issuer.issue(Role.HOST, host, 60))
    library_quiz = await api.call(
        "CreateLibraryQuiz",
        {**REFERENCE_QUIZ, "title": LIBRARY_TITLE},
        issuer.issue(Role.HOST, host, 600),
    )
    account_email = f"authz-{tag}@matrix.example"
    await api.call(
        "SignUp",
        {"email": account_email, "password": ACCOUNT_PASSWORD, "display_name": "Matrix"},
    )
    return World(
        open_quiz=open_quiz,
        running_quiz=running_quiz,
        other_quiz=other_quiz,
        host=host,
        other_host=other_host,
        players=players,
        outsider=outsider,
        kid=real_kid(backends),
        stack=stack,
        account_email=account_email,
        library_quiz_id=library_quiz["library_quiz"]["library_quiz_id"],
    )


async def fresh_quiz(world: World, running: bool) -> str:
    """A quiz of `world.host` of its own, for a call that is allowed to change it."""
    api = GrpcApi(world.stack.channels)
    token = world.stack.backends.issuer().issue(Role.HOST, world.host, 60)
    quiz_id = str((await api.call("CreateQuiz", REFERENCE_QUIZ, token))["quiz"]["quiz_id"])
    if running:
        await api.call("StartQuiz", {"quiz_id": quiz_id}, token)
    return quiz_id


async def fresh_library_quiz(world: World) -> str:
    """A library quiz of `world.host` of its own, for a call allowed to delete it."""
    token = world.stack.backends.issuer().issue(Role.HOST, world.host, 60)
    made = await GrpcApi(world.stack.channels).call(
        "CreateLibraryQuiz", {**REFERENCE_QUIZ, "title": "to delete"}, token
    )
    return str(made["library_quiz"]["library_quiz_id"])


def request_for(rpc: str, quiz_id: str, world: World, cell: str) -> dict[str, Any]:
    match rpc:
        case "CreateQuiz":
            return {**REFERENCE_QUIZ, "title": f"{MATRIX_TITLE} {cell}"}
        case "ListQuizzes":
            return {"page_size": 1}
        case "JoinQuiz":
            return {"quiz_id": quiz_id, "nickname": f"j-{cell}"[:32]}
        case "SubmitAnswer":
            return {"quiz_id": quiz_id, "question_index": 0, "choice_index": 1}
        case "SetLobby":  # unlocked, as it is: the quiz stays joinable for other cells
            return {"quiz_id": quiz_id, "locked": False}
        case "GetPlayerScore" | "GetPlayerRank":
            return {"quiz_id": quiz_id, "player_id": world.players[quiz_id]["player"].player_id}
        case "SignUp":
            return {
                "email": f"{cell}.{uuid.uuid4().hex[:6]}@matrix.example",
                "password": ACCOUNT_PASSWORD,
                "display_name": "Matrix",
            }
        case "SignIn":
            return {"email": world.account_email, "password": ACCOUNT_PASSWORD}
        case "CreateLibraryQuiz":
            return {**REFERENCE_QUIZ, "title": f"library {cell}"}
        case "ListLibraryQuizzes":
            return {"page_size": 1}
        case "UpdateLibraryQuiz":
            return {
                "library_quiz_id": world.library_quiz_id,
                **REFERENCE_QUIZ,
                "title": f"{LIBRARY_TITLE} {cell}",
            }
        case _ if rpc in LIBRARY_RPCS:
            return {"library_quiz_id": world.library_quiz_id}
        case _:
            return {"quiz_id": quiz_id}


class HeaderHttpApi(HttpApi):
    """HttpApi whose watches send the token as an `authorization` header."""

    async def watch(
        self, rpc: str, request: dict[str, Any], token: str | None = None
    ) -> AsyncGenerator[dict[str, Any], None]:
        verb, path, query, _ = self._request(rpc, request)
        headers = {"authorization": f"Bearer {token}"} if token else {}
        async with self.client.stream(
            verb, path, params=query, headers=headers, timeout=None
        ) as response:
            if response.status_code != 200:
                raise self._error(response.status_code, (await response.aread()).decode())
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    yield json.loads(line[5:])


async def first_message(
    api: Api, rpc: str, request: dict[str, Any], token: str | None
) -> dict[str, Any]:
    stream = api.watch(rpc, request, token)
    try:
        return await asyncio.wait_for(anext(stream), timeout=10)
    finally:
        with contextlib.suppress(ApiError):
            await stream.aclose()


async def outcome(call: Any) -> tuple[Code, ApiError | None, Any]:
    try:
        reply = await call
    except ApiError as e:
        return e.code, e, None
    return OK, None, reply


def cells() -> list[Any]:
    return [
        pytest.param(rpc, caller, code, transport, via, id=f"{rpc}-{caller}-{transport}-{via}")
        for rpc, expected in MATRIX.items()
        for caller, code in expected.items()
        for transport in TRANSPORTS
        for via in (("header", "field") if rpc in STREAMS else ("header",))
    ]


@pytest.mark.parametrize(("rpc", "caller", "expected", "transport", "via"), cells())
async def test_authorization_cell(
    world: World, ways: Ways, rpc: str, caller: str, expected: Code, transport: str, via: str
) -> None:
    cell = f"{caller}-{transport}-{via}"
    quiz_id = world.quiz_for(rpc)
    if expected is OK and rpc in ("StartQuiz", "AdvanceQuestion", "CloseQuiz"):
        quiz_id = await fresh_quiz(world, running=rpc != "StartQuiz")
    token = world.token(caller, rpc, quiz_id)
    request = request_for(rpc, quiz_id, world, cell)
    if rpc in SESSION_RPCS:
        request = {"refresh_token": await world.refresh_token()}
    if rpc == "DeleteLibraryQuiz" and expected is OK:
        request = {"library_quiz_id": await fresh_library_quiz(world)}
    library_before = await world.library() if rpc in LIBRARY_RPCS else None
    api = ways.api(transport)

    if rpc in STREAMS:
        if via == "field":
            # The token in the request itself (over HTTP: the access_token parameter).
            if transport != "http" and token is not None:
                request["access_token"] = token
                token = None
        elif transport == "http":
            api = HeaderHttpApi(ways.http.client)
        code, error, reply = await outcome(first_message(api, rpc, request, token))
    else:
        code, error, reply = await outcome(api.call(rpc, request, token))

    assert code == expected, f"{rpc} by {caller} over {transport}/{via}: {error or reply}"
    if error is not None and error.http_status is not None:
        assert error.http_status == HTTP_STATUS[code], error
    if caller in BAD_TOKENS and transport in ENVOY and not (via == "field" and transport != "http"):
        # Envoy's own refusal, before any service: jwt_authn's words, not a service's.
        assert error is not None
        assert error.message.lower().startswith("jwt"), error.message
    if rpc in STREAMS and reply is not None:
        assert reply, "the first message of a watch must not be empty"
    if rpc == "WatchLeaderboard" and reply is not None and "you" in reply and reply["you"]:
        # Only a player of this quiz is told their own standing.
        assert caller in ("player", "fellow"), reply
    if expected is not OK:
        await assert_unchanged(world, rpc, quiz_id, request)
        if library_before is not None:
            assert await world.library() == library_before, f"a refused {rpc} changed a library"


async def assert_unchanged(world: World, rpc: str, quiz_id: str, request: dict[str, Any]) -> None:
    """A refused call left the quiz as it was."""
    match rpc:
        case "StartQuiz":
            assert (await world.quiz_view(quiz_id))["state"] == "QUIZ_STATE_OPEN"
        case "AdvanceQuestion" | "CloseQuiz":
            view = await world.quiz_view(quiz_id)
            assert (view["state"], view["current_question"]) == ("QUIZ_STATE_RUNNING", 0)
        case "SubmitAnswer":
            assert await world.score_of(quiz_id, world.players[quiz_id]["ghost"]) == (0, 0)
            assert await world.score_of(world.other_quiz, world.outsider) == (0, 0)
        case "JoinQuiz":
            assert request["nickname"] not in await world.nicknames(quiz_id)
        case "SignUp":  # no account was made
            with pytest.raises(ApiError, match="BAD_CREDENTIALS"):
                await GrpcApi(world.stack.channels).call(
                    "SignIn", {"email": request["email"], "password": ACCOUNT_PASSWORD}
                )
        case "RefreshSession" | "SignOut":  # the session goes on
            await GrpcApi(world.stack.channels).call("RefreshSession", request)


async def test_refused_calls_changed_nothing(world: World) -> None:
    """After the whole matrix: the refused lifecycle calls and answers left no trace."""
    assert (await world.quiz_view(world.open_quiz))["state"] == "QUIZ_STATE_OPEN"
    running = await world.quiz_view(world.running_quiz)
    assert (running["state"], running["current_question"]) == ("QUIZ_STATE_RUNNING", 0)
    ghost = world.players[world.running_quiz]["ghost"]
    assert await world.score_of(world.running_quiz, ghost) == (0, 0)
    api = GrpcApi(world.stack.channels)
    titles: list[str] = []
    page = ""
    while True:
        listed = await api.call("ListQuizzes", {"page_size": 100, "page_token": page})
        titles += [q["title"] for q in listed["quizzes"]]
        page = listed["next_page_token"]
        if not page:
            break
    creators = {t.split()[1].split("-")[0] for t in titles if t.startswith(MATRIX_TITLE)}
    assert creators <= {"host", "other_host"}, creators  # only hosts created quizzes


def test_the_matrix_covers_every_rpc() -> None:
    # A watch's SSE form is its `http` column (the same handler checks the caller).
    assert set(MATRIX) | set(SSE_FORM.values()) == set(METHODS)


# Identity headers a proxy might add; the mesh must not believe any of them.
def identity_headers(subject: str) -> dict[str, str]:
    return {
        "x-jwt-payload": b64url(claims_of("host", subject)),
        "x-user": subject,
        "x-user-id": subject,
        "x-quizmesh-subject": subject,
        "x-quizmesh-role": "host",
        "x-forwarded-user": subject,
        "x-auth-request-user": subject,
        "x-remote-user": subject,
    }


async def raw_call(
    ways: Ways, transport: str, rpc: str, request: dict[str, Any], headers: dict[str, str]
) -> tuple[Code, int | None]:
    """One call with arbitrary headers; its gRPC code and (over HTTP) status."""
    if transport == "http":
        verb, path, query, body = HttpApi._request(rpc, request)
        response = await ways.http.client.request(
            verb, path, params=query, json=body, headers=headers
        )
        if response.status_code == 200:
            return OK, 200
        return HttpApi._error(response.status_code, response.text).code, response.status_code
    channel = ways.envoy_channel if transport == "envoy-grpc" else None
    metadata = tuple(headers.items())
    try:
        if rpc == "StartQuiz":
            quiz_stub = quiz_pb2_grpc.QuizServiceStub(channel or ways.direct.channels["quiz"])
            await quiz_stub.StartQuiz(
                json_format.ParseDict(request, quiz_pb2.StartQuizRequest()), metadata=metadata
            )
        else:
            assert rpc == "SubmitAnswer"
            score_stub = score_pb2_grpc.ScoreServiceStub(channel or ways.direct.channels["score"])
            await score_stub.SubmitAnswer(
                json_format.ParseDict(request, score_pb2.SubmitAnswerRequest()),
                metadata=metadata,
            )
    except grpc.aio.AioRpcError as e:
        return e.code(), None
    return OK, None


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_identity_headers_from_outside_are_not_trusted(
    world: World, ways: Ways, transport: str
) -> None:
    start = {"quiz_id": world.open_quiz}
    ghost = world.players[world.running_quiz]["ghost"]
    answer = {"quiz_id": world.running_quiz, "question_index": 0, "choice_index": 1}
    forged_host = alg_none_token(claims_of("host", world.host), world.kid)
    forged_ghost = alg_none_token(
        claims_of("player", ghost.player_id, world.running_quiz), world.kid
    )
    pretend_host = identity_headers(world.host)
    pretend_ghost = {**identity_headers(ghost.player_id), "x-quizmesh-quiz": world.running_quiz}
    player = world.players[world.open_quiz]["player"].token

    def with_auth(token: str, headers: dict[str, str]) -> dict[str, str]:
        return {**headers, "authorization": f"Bearer {token}"}

    cases: list[tuple[str, dict[str, Any], dict[str, str], Code]] = [
        # Headers alone: no token, so nobody.
        ("StartQuiz", start, pretend_host, UNAUTH),
        ("SubmitAnswer", answer, pretend_ghost, UNAUTH),
        # Headers and an unsigned token saying the same.
        ("StartQuiz", start, with_auth(forged_host, pretend_host), UNAUTH),
        ("SubmitAnswer", answer, with_auth(forged_ghost, pretend_ghost), UNAUTH),
        # The same with a made-up signature part (Envoy must not stop at the format).
        ("StartQuiz", start, with_auth(forged_host + "c2ln", pretend_host), UNAUTH),
        ("SubmitAnswer", answer, with_auth(forged_ghost + "c2ln", pretend_ghost), UNAUTH),
        # A real player token: the headers do not make that player the host.
        ("StartQuiz", start, with_auth(player, pretend_host), DENIED),
    ]
    for rpc, request, headers, expected in cases:
        code, status = await raw_call(ways, transport, rpc, request, headers)
        assert code == expected, (rpc, sorted(headers), code)
        if status is not None:
            assert status == HTTP_STATUS[expected]
    assert (await world.quiz_view(world.open_quiz))["state"] == "QUIZ_STATE_OPEN"
    assert await world.score_of(world.running_quiz, ghost) == (0, 0)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_player_token_for_another_quiz_cannot_answer_this_one(
    world: World, ways: Ways, transport: str
) -> None:
    """Same subject as a real player of this quiz, validly signed, but `quiz` names
    another quiz: the claim, not the subject, decides which quiz the player is in."""
    api = ways.api(transport)
    ghost = world.players[world.running_quiz]["ghost"]
    elsewhere = world.stack.backends.issuer().issue(
        Role.PLAYER, ghost.player_id, 600, quiz_id=world.other_quiz
    )
    answer = {"quiz_id": world.running_quiz, "question_index": 0, "choice_index": 1}
    calls: list[tuple[str, dict[str, Any]]] = [
        ("SubmitAnswer", answer),
        ("GetPlayerScore", {"quiz_id": world.running_quiz, "player_id": ghost.player_id}),
    ]
    for rpc, request in calls:
        code, error, _ = await outcome(api.call(rpc, request, elsewhere))
        assert code == DENIED, (rpc, error)
        if error is not None and error.http_status is not None:
            assert error.http_status == 403
    # The real outsider of the other quiz cannot either.
    code, _, _ = await outcome(api.call("SubmitAnswer", answer, world.outsider.token))
    assert code == DENIED
    assert await world.score_of(world.running_quiz, ghost) == (0, 0)
