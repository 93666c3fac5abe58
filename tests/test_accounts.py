"""Host accounts: sign up, sign in, sessions that refresh and end, over gRPC and
HTTP through Envoy; the operator's sign-up modes and the attempt limits."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import grpc
import httpx
import pytest
from sqlalchemy import select, update

from devstack.gateway import EnvoyProcess
from services.database.engine import create_engine
from services.database.tables import host_sessions, hosts
from services.mesh.app import ServiceApp
from services.quiz import server as quiz_server
from services.quiz.config import Settings as QuizSettings
from tests.api import Api, ApiError, GrpcApi
from tests.game import REFERENCE_QUIZ
from tests.stack import Stack

PASSWORD = "correct horse battery staple"


def new_email(tag: str = "") -> str:
    return f"host-{tag}{uuid.uuid4().hex[:10]}@Example.org"


def sign_up_request(email: str, password: str = PASSWORD, **more: str) -> dict[str, Any]:
    return {"email": email, "password": password, "display_name": "Ms Ada", **more}


@pytest.fixture
def api(either_api: Api) -> Api:
    return either_api


async def refused(call: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        await call
    return caught.value


async def test_a_new_host_signs_up_and_their_access_token_hosts_quizzes(api: Api) -> None:
    email = new_email()

    made = await api.call("SignUp", sign_up_request(email))

    host, session = made["host"], made["session"]
    assert host["email"] == email.lower()  # the sign-in name, whatever its case
    assert host["display_name"] == "Ms Ada"
    assert session["refresh_token"].startswith("qmr_")
    created = await api.call("CreateQuiz", REFERENCE_QUIZ, session["access_token"])
    assert created["quiz"]["host"] == host["host_id"]


async def test_signing_in_needs_the_right_password_and_says_no_more(api: Api) -> None:
    email = new_email()
    await api.call("SignUp", sign_up_request(email))

    wrong = await refused(api.call("SignIn", {"email": email, "password": "not the password"}))
    unknown = await refused(api.call("SignIn", {"email": new_email(), "password": PASSWORD}))
    signed_in = await api.call("SignIn", {"email": email.upper(), "password": PASSWORD})

    for error in (wrong, unknown):
        assert (error.code, error.reason) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "BAD_CREDENTIALS",
        )
        assert error.message == "wrong email or password"  # an unknown email reads the same
    assert signed_in["host"]["email"] == email.lower()
    assert signed_in["session"]["access_token"]


async def test_an_email_has_one_account_whatever_its_case(api: Api) -> None:
    email = new_email()
    await api.call("SignUp", sign_up_request(email))

    error = await refused(
        api.call("SignUp", sign_up_request(email.upper(), password="another long password"))
    )

    assert (error.code, error.reason) == (grpc.StatusCode.ALREADY_EXISTS, "EMAIL_TAKEN")
    # The account is as it was: its own password still works, the other does not.
    await api.call("SignIn", {"email": email, "password": PASSWORD})
    await refused(api.call("SignIn", {"email": email, "password": "another long password"}))


async def test_a_refresh_token_works_once_and_a_reused_one_ends_the_session(api: Api) -> None:
    first = (await api.call("SignUp", sign_up_request(new_email())))["session"]

    second = (await api.call("RefreshSession", {"refresh_token": first["refresh_token"]}))[
        "session"
    ]
    reused = await refused(api.call("RefreshSession", {"refresh_token": first["refresh_token"]}))
    # Whoever replayed the old token, the session is over for the holder of the new one too.
    after = await refused(api.call("RefreshSession", {"refresh_token": second["refresh_token"]}))

    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"]
    for error in (reused, after):
        assert (error.code, error.reason) == (grpc.StatusCode.UNAUTHENTICATED, "SESSION_ENDED")
        assert "sign in again" in error.message


async def test_signing_out_ends_the_session_at_once(api: Api) -> None:
    session = (await api.call("SignUp", sign_up_request(new_email())))["session"]

    await api.call("SignOut", {"refresh_token": session["refresh_token"]})

    error = await refused(api.call("RefreshSession", {"refresh_token": session["refresh_token"]}))
    assert error.reason == "SESSION_ENDED"
    unknown = await refused(api.call("SignOut", {"refresh_token": "qmr_never-issued"}))
    assert (unknown.code, unknown.reason) == (grpc.StatusCode.UNAUTHENTICATED, "SESSION_ENDED")


async def test_an_expired_refresh_token_is_refused(stack: Stack) -> None:
    api = GrpcApi(stack.channels)
    session = (await api.call("SignUp", sign_up_request(new_email())))["session"]
    digest = hashlib.sha256(session["refresh_token"].encode()).hexdigest()
    engine = create_engine(stack.backends.database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                update(host_sessions)
                .where(host_sessions.c.token_hash == digest)
                .values(expires_ms=1)
            )
    finally:
        await engine.dispose()

    error = await refused(api.call("RefreshSession", {"refresh_token": session["refresh_token"]}))

    assert error.reason == "SESSION_ENDED"


async def test_passwords_and_refresh_tokens_are_not_stored(stack: Stack) -> None:
    made = await GrpcApi(stack.channels).call("SignUp", sign_up_request(new_email()))
    engine = create_engine(stack.backends.database_url)
    try:
        async with engine.connect() as conn:
            stored = (
                await conn.execute(
                    select(hosts.c.password_hash).where(hosts.c.id == made["host"]["host_id"])
                )
            ).scalar_one()
            tokens = (
                await conn.execute(
                    select(host_sessions.c.token_hash).where(
                        host_sessions.c.host_id == made["host"]["host_id"]
                    )
                )
            ).scalars()
            token_rows = list(tokens)
    finally:
        await engine.dispose()

    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    assert token_rows == [hashlib.sha256(made["session"]["refresh_token"].encode()).hexdigest()]


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("email", "not-an-email", "an email address"),
        ("password", "too short", "between 10 and 128 characters, got 9"),
        ("display_name", "   ", "must not be empty"),
        ("password", "x" * 129, "between 10 and 128 characters, got 129"),
    ],
)
async def test_bad_sign_up_input_is_refused_naming_the_field_and_creates_nothing(
    api: Api, field: str, value: str, words: str
) -> None:
    email = new_email()
    request = sign_up_request(email)
    request[field] = value

    error = await refused(api.call("SignUp", request))

    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "FIELD_INVALID")
    assert [f for f, _ in error.violations] == [field]
    assert words in error.violations[0][1]
    if field != "email":
        lost = await refused(api.call("SignIn", {"email": email, "password": PASSWORD}))
        assert lost.reason == "BAD_CREDENTIALS"


async def test_http_statuses_of_refusals(gateway: EnvoyProcess) -> None:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        email = new_email()
        ok = await client.post("/v1/accounts", json=sign_up_request(email))
        taken = await client.post("/v1/accounts", json=sign_up_request(email))
        wrong = await client.post("/v1/sessions", json={"email": email, "password": "nope"})
        ended = await client.post("/v1/sessions:refresh", json={"refresh_token": "qmr_x"})

    assert ok.status_code == 200
    assert (taken.status_code, wrong.status_code, ended.status_code) == (409, 401, 401)


class OwnQuizServer:
    """A quiz service of the test's own, with its own policy and key prefix."""

    def __init__(self, stack: Stack, **policy: Any) -> None:
        self.settings = QuizSettings(
            **stack.common() | {"key_prefix": f"acct{uuid.uuid4().hex[:8]}:"} | policy
        )
        self.app: ServiceApp | None = None
        self.channel: grpc.aio.Channel | None = None

    async def __aenter__(self) -> GrpcApi:
        self.app = await quiz_server.create_server(self.settings)
        await self.app.start()
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.app.port}")
        return GrpcApi({"quiz": self.channel})

    async def __aexit__(self, *exc: object) -> None:
        assert self.app is not None
        assert self.channel is not None
        await self.channel.close()
        await self.app.stop(1.0)


async def test_the_operator_can_close_sign_up_or_make_it_invite_only(stack: Stack) -> None:
    async with OwnQuizServer(stack, sign_up="closed") as closed:
        no = await refused(closed.call("SignUp", sign_up_request(new_email())))
    async with OwnQuizServer(
        stack, sign_up="invite", sign_up_invite_codes="staff-2026, guests-77"
    ) as invite:
        missing = await refused(invite.call("SignUp", sign_up_request(new_email())))
        bad = await refused(
            invite.call("SignUp", sign_up_request(new_email(), invite_code="guess"))
        )
        made = await invite.call("SignUp", sign_up_request(new_email(), invite_code="guests-77"))

    assert (no.code, no.reason) == (grpc.StatusCode.PERMISSION_DENIED, "SIGN_UP_CLOSED")
    assert "closed" in no.message
    assert "needs an invite code" in missing.message
    assert "not valid" in bad.message
    assert made["session"]["access_token"]


def test_invite_only_without_codes_does_not_start(stack: Stack) -> None:
    with pytest.raises(ValueError, match="QUIZMESH_SIGN_UP_INVITE_CODES"):
        QuizSettings(**stack.common(), sign_up="invite")


async def test_sign_ups_from_one_address_are_limited(stack: Stack) -> None:
    async with OwnQuizServer(stack, sign_ups_per_address=2) as quiz:
        for _ in range(2):
            await quiz.call("SignUp", sign_up_request(new_email()))
        email = new_email()
        error = await refused(quiz.call("SignUp", sign_up_request(email)))
        lost = await refused(quiz.call("SignIn", {"email": email, "password": PASSWORD}))

    assert (error.code, error.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")
    assert "from this address" in error.message
    assert "try again in" in error.message
    assert lost.reason == "BAD_CREDENTIALS"  # the refused sign-up made no account


async def test_failed_sign_ins_for_one_email_are_limited_and_others_are_not(
    stack: Stack,
) -> None:
    async with OwnQuizServer(stack, failed_sign_ins_per_email=3) as quiz:
        target, other = new_email(), new_email()
        for email in (target, other):
            await quiz.call("SignUp", sign_up_request(email))
        for _ in range(3):
            await refused(quiz.call("SignIn", {"email": target, "password": "a wrong guess"}))

        # Even the right password waits now: the guesser cannot tell it was right.
        blocked = await refused(quiz.call("SignIn", {"email": target, "password": PASSWORD}))
        fine = await quiz.call("SignIn", {"email": other, "password": PASSWORD})

    assert (blocked.code, blocked.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")
    assert "for this email" in blocked.message
    assert fine["session"]["access_token"]
