"""The gateway connection: one gRPC channel, the generated stubs, the host's token.

Envoy passes native gRPC through the same listener that serves HTTP/JSON, so the
CLI speaks gRPC to the gateway address and Envoy routes by service name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import grpc
from cryptography.exceptions import UnsupportedAlgorithm
from google.protobuf.message import Message
from pydantic import ValidationError
from quizmesh.leaderboard.v1 import leaderboard_pb2, leaderboard_pb2_grpc
from quizmesh.quiz.v1 import (
    account_pb2,
    account_pb2_grpc,
    library_pb2_grpc,
    quiz_pb2,
    quiz_pb2_grpc,
)

from services.identity.keys import ensure_dev_keys
from services.identity.tokens import Role, TokenIssuer
from services.mesh.config import CommonSettings
from services.mesh.retries import channel_options

DEFAULT_TARGET = "localhost:8080"
# A token signed for --as lives as long as one quiz evening needs it to.
AS_TOKEN_TTL_SECONDS = 4 * 3600


class IdentityError(Exception):
    """No usable host identity (missing key, bad settings); a message for the user."""


@dataclass(frozen=True, slots=True)
class Connection:
    """Where the gateway is and who is calling; resolved from flags and environment."""

    target: str = DEFAULT_TARGET
    token: str | None = None
    timeout_seconds: float = 10.0
    tls: bool = False


def resolve_target(flag: str | None, environ: Mapping[str, str]) -> str:
    return flag or environ.get("QUIZMESH_TARGET") or DEFAULT_TARGET


def resolve_token(
    token_flag: str | None, as_flag: str | None, environ: Mapping[str, str]
) -> str | None:
    """The caller's bearer token, if any.

    A flag beats the environment, and a given token beats signing one: --token,
    then --as, then QUIZMESH_TOKEN, then QUIZMESH_HOST.
    """
    if token_flag:
        return token_flag
    if as_flag:
        return sign_as_host(as_flag, environ)
    if environ.get("QUIZMESH_TOKEN"):
        return environ["QUIZMESH_TOKEN"]
    if environ.get("QUIZMESH_HOST"):
        return sign_as_host(environ["QUIZMESH_HOST"], environ)
    return None


def sign_as_host(name: str, environ: Mapping[str, str]) -> str:
    """Signs a host token with the existing dev key; never creates a key."""
    settings = settings_of(environ)
    key_file = settings.signing_key_file
    if not key_file.exists():
        raise IdentityError(
            f"no signing key at {key_file}: run 'quizctl token --role host --subject {name}' "
            "once to create the dev keys, or pass a token with --token / QUIZMESH_TOKEN"
        )
    return _issuer(settings, key_file).issue(Role.HOST, name, AS_TOKEN_TTL_SECONDS)


def issue_token(
    role: Role,
    subject: str,
    ttl_seconds: int,
    environ: Mapping[str, str],
    quiz_id: str | None = None,
) -> tuple[str, Path | None]:
    """Signs a token, creating the dev key pair first if there is none.

    Returns the token and, when keys were just created, the JWKS file to show the user.
    """
    settings = settings_of(environ)
    created = not (settings.signing_key_file.exists() and settings.jwks_file.exists())
    try:
        ensure_dev_keys(settings.signing_key_file, settings.jwks_file)
    except OSError as e:
        raise IdentityError(f"cannot create dev keys: {e}") from None
    token = _issuer(settings, settings.signing_key_file).issue(role, subject, ttl_seconds, quiz_id)
    return token, settings.jwks_file if created else None


def settings_of(environ: Mapping[str, str]) -> CommonSettings:
    """The QUIZMESH_* settings `environ` gives (the process's own, or a test's)."""
    given = {
        name.removeprefix("QUIZMESH_").lower(): value
        for name, value in environ.items()
        if name.startswith("QUIZMESH_")
    }
    try:
        return CommonSettings.model_validate(given)
    except ValidationError as e:
        problems = "; ".join(str(err["msg"]) for err in e.errors())
        raise IdentityError(f"invalid QUIZMESH_* settings: {problems}") from None


def _issuer(settings: CommonSettings, key_file: Path) -> TokenIssuer:
    try:
        return TokenIssuer.from_file(key_file, settings.token_issuer, settings.token_audience)
    except (OSError, ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise IdentityError(f"cannot use signing key {key_file}: {e}") from None


class QuizMeshClient:
    """Typed calls to the quiz and leaderboard services, each with the caller's token.

    Use as ``async with QuizMeshClient(connection) as client: ...``.
    """

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        # gRPC retries the idempotent calls on UNAVAILABLE itself (services/mesh/retries.py).
        options = channel_options()
        if connection.tls:
            self._channel = grpc.aio.secure_channel(
                connection.target, grpc.ssl_channel_credentials(), options=options
            )
        else:
            self._channel = grpc.aio.insecure_channel(connection.target, options=options)
        self._quizzes = quiz_pb2_grpc.QuizServiceStub(self._channel)
        self._leaderboards = leaderboard_pb2_grpc.LeaderboardServiceStub(self._channel)
        self._accounts = account_pb2_grpc.AccountServiceStub(self._channel)
        self._library = library_pb2_grpc.LibraryServiceStub(self._channel)
        token = connection.token
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ()
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def create_quiz(self, request: quiz_pb2.CreateQuizRequest) -> quiz_pb2.CreateQuizResponse:
        response: quiz_pb2.CreateQuizResponse = await self._quizzes.CreateQuiz(
            request, metadata=self._metadata, timeout=self._connection.timeout_seconds
        )
        return response

    async def get_quiz(self, quiz_id: str) -> quiz_pb2.GetQuizResponse:
        response: quiz_pb2.GetQuizResponse = await self._quizzes.GetQuiz(
            quiz_pb2.GetQuizRequest(quiz_id=quiz_id),
            metadata=self._metadata,
            timeout=self._connection.timeout_seconds,
        )
        return response

    async def list_quizzes(self, page_size: int, page_token: str) -> quiz_pb2.ListQuizzesResponse:
        response: quiz_pb2.ListQuizzesResponse = await self._quizzes.ListQuizzes(
            quiz_pb2.ListQuizzesRequest(page_size=page_size, page_token=page_token),
            metadata=self._metadata,
            timeout=self._connection.timeout_seconds,
        )
        return response

    async def start_quiz(self, quiz_id: str) -> quiz_pb2.StartQuizResponse:
        response: quiz_pb2.StartQuizResponse = await self._quizzes.StartQuiz(
            quiz_pb2.StartQuizRequest(quiz_id=quiz_id),
            metadata=self._metadata,
            timeout=self._connection.timeout_seconds,
        )
        return response

    async def advance_question(self, quiz_id: str) -> quiz_pb2.AdvanceQuestionResponse:
        response: quiz_pb2.AdvanceQuestionResponse = await self._quizzes.AdvanceQuestion(
            quiz_pb2.AdvanceQuestionRequest(quiz_id=quiz_id),
            metadata=self._metadata,
            timeout=self._connection.timeout_seconds,
        )
        return response

    async def close_quiz(self, quiz_id: str) -> quiz_pb2.CloseQuizResponse:
        response: quiz_pb2.CloseQuizResponse = await self._quizzes.CloseQuiz(
            quiz_pb2.CloseQuizRequest(quiz_id=quiz_id),
            metadata=self._metadata,
            timeout=self._connection.timeout_seconds,
        )
        return response

    async def report(self, quiz_id: str) -> quiz_pb2.QuizReport:
        response: quiz_pb2.GetQuizReportResponse = await self._quizzes.GetQuizReport(
            quiz_pb2.GetQuizReportRequest(quiz_id=quiz_id),
            metadata=self._metadata,
            timeout=self._connection.timeout_seconds,
        )
        return response.report

    async def report_csv(self, quiz_id: str) -> bytes:
        response: quiz_pb2.GetQuizReportCsvResponse = await self._quizzes.GetQuizReportCsv(
            quiz_pb2.GetQuizReportCsvRequest(quiz_id=quiz_id),
            metadata=self._metadata,
            timeout=self._connection.timeout_seconds,
        )
        return response.csv.data

    async def lock_lobby(self, quiz_id: str) -> quiz_pb2.SetLobbyResponse:
        return await self._set_lobby(quiz_id, locked=True)

    async def unlock_lobby(self, quiz_id: str) -> quiz_pb2.SetLobbyResponse:
        return await self._set_lobby(quiz_id, locked=False)

    async def _set_lobby(self, quiz_id: str, locked: bool) -> quiz_pb2.SetLobbyResponse:
        response: quiz_pb2.SetLobbyResponse = await self._quizzes.SetLobby(
            quiz_pb2.SetLobbyRequest(quiz_id=quiz_id, locked=locked),
            metadata=self._metadata,
            timeout=self._connection.timeout_seconds,
        )
        return response

    async def get_leaderboard(
        self, quiz_id: str, page_size: int, page_token: str
    ) -> leaderboard_pb2.GetLeaderboardResponse:
        response: leaderboard_pb2.GetLeaderboardResponse = await self._leaderboards.GetLeaderboard(
            leaderboard_pb2.GetLeaderboardRequest(
                quiz_id=quiz_id, page_size=page_size, page_token=page_token
            ),
            metadata=self._metadata,
            timeout=self._connection.timeout_seconds,
        )
        return response

    # Host accounts: no token is sent (the credentials are the request).

    async def sign_up(self, request: account_pb2.SignUpRequest) -> account_pb2.SignUpResponse:
        response: account_pb2.SignUpResponse = await self._accounts.SignUp(
            request, timeout=self._connection.timeout_seconds
        )
        return response

    async def sign_in(self, email: str, password: str) -> account_pb2.SignInResponse:
        response: account_pb2.SignInResponse = await self._accounts.SignIn(
            account_pb2.SignInRequest(email=email, password=password),
            timeout=self._connection.timeout_seconds,
        )
        return response

    async def refresh_session(self, refresh_token: str) -> account_pb2.Session:
        response: account_pb2.RefreshSessionResponse = await self._accounts.RefreshSession(
            account_pb2.RefreshSessionRequest(refresh_token=refresh_token),
            timeout=self._connection.timeout_seconds,
        )
        return response.session

    async def sign_out(self, refresh_token: str) -> None:
        await self._accounts.SignOut(
            account_pb2.SignOutRequest(refresh_token=refresh_token),
            timeout=self._connection.timeout_seconds,
        )

    async def library(self, method: str, request: Message) -> Any:
        """A LibraryService call by name (each is the host's own: the token is sent)."""
        call = getattr(self._library, method)
        return await call(
            request, metadata=self._metadata, timeout=self._connection.timeout_seconds
        )
