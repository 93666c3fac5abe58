"""AccountService: host accounts, sign-in and sessions (access + refresh tokens).

An access token is an ordinary host token (services/identity/tokens.py), so Envoy
and every service check it as they check any other; a refresh token is a random
secret of which SQL keeps only the SHA-256, used once each (account_store.py)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal

from quizmesh.quiz.v1 import account_pb2, account_pb2_grpc

from services.identity.tokens import Role, TokenIssuer, TokenVerifier
from services.mesh.clock import now_ms, timestamp
from services.mesh.context import Context
from services.mesh.errors import AlreadyExists, PermissionDenied, Reason, Unauthenticated
from services.mesh.stream_quota import client_address
from services.quiz.account_store import AccountStore, EmailTaken, HostRecord, NewSession
from services.quiz.attempts import Attempts, Limit
from services.quiz.passwords import Passwords

SignUpMode = Literal["open", "invite", "closed"]
# Refresh tokens are recognisable to secret scanners and people alike.
REFRESH_PREFIX = "qmr_"


@dataclass(frozen=True, slots=True)
class AccountPolicy:
    sign_up: SignUpMode
    invite_codes: tuple[str, ...]
    access_ttl_seconds: int
    refresh_ttl_seconds: int
    sign_ups: Limit
    failures_per_email: Limit
    failures_per_address: Limit


def normal_email(email: str) -> str:
    return email.strip().lower()


def token_hash(refresh_token: str) -> str:
    return hashlib.sha256(refresh_token.encode()).hexdigest()


def host_view(host: HostRecord) -> account_pb2.Host:
    return account_pb2.Host(
        host_id=host.host_id,
        email=host.email,
        display_name=host.display_name,
        created_at=timestamp(host.created_ms),
    )


SESSION_ENDED = (
    "this refresh token no longer works (expired, already used, or signed out); sign in again"
)


@dataclass
class AccountService(account_pb2_grpc.AccountServiceServicer):
    store: AccountStore
    passwords: Passwords
    attempts: Attempts
    issuer: TokenIssuer
    verifier: TokenVerifier
    policy: AccountPolicy

    async def SignUp(
        self, request: account_pb2.SignUpRequest, context: Context
    ) -> account_pb2.SignUpResponse:
        # No token is needed; one that is sent must be valid, as everywhere.
        self.verifier.optional_caller(context)
        self._check_invite(request.invite_code)
        address = _address(context)
        await self.attempts.check(self.policy.sign_ups, address)
        await self.attempts.count(self.policy.sign_ups, address)
        created = now_ms()
        host = HostRecord(
            host_id=secrets.token_hex(8),
            email=normal_email(request.email),
            display_name=request.display_name.strip(),
            password_hash=await self.passwords.hash(request.password),
            created_ms=created,
        )
        session, first = self._new_session(host.host_id, secrets.token_hex(16), created)
        try:
            await self.store.add_host(host, first)
        except EmailTaken:
            raise AlreadyExists(
                f"an account with the email {host.email} exists; sign in instead",
                Reason.ERROR_REASON_EMAIL_TAKEN,
            ) from None
        return account_pb2.SignUpResponse(host=host_view(host), session=session)

    async def SignIn(
        self, request: account_pb2.SignInRequest, context: Context
    ) -> account_pb2.SignInResponse:
        # No token is needed; one that is sent must be valid, as everywhere.
        self.verifier.optional_caller(context)
        email = normal_email(request.email)
        address = _address(context)
        await self.attempts.check(self.policy.failures_per_email, email)
        await self.attempts.check(self.policy.failures_per_address, address)
        host = await self.store.host_by_email(email)
        stored = host.password_hash if host is not None else None
        if host is None or not await self.passwords.verify(stored, request.password):
            await self.attempts.count(self.policy.failures_per_email, email)
            await self.attempts.count(self.policy.failures_per_address, address)
            raise Unauthenticated("wrong email or password", Reason.ERROR_REASON_BAD_CREDENTIALS)
        if self.passwords.needs_rehash(host.password_hash):
            await self.store.set_password_hash(
                host.host_id, await self.passwords.hash(request.password)
            )
        session, row = self._new_session(host.host_id, secrets.token_hex(16), now_ms())
        await self.store.add_session(row)
        return account_pb2.SignInResponse(host=host_view(host), session=session)

    async def RefreshSession(
        self, request: account_pb2.RefreshSessionRequest, context: Context
    ) -> account_pb2.RefreshSessionResponse:
        # No token is needed; one that is sent must be valid, as everywhere.
        self.verifier.optional_caller(context)
        now = now_ms()
        refresh = REFRESH_PREFIX + secrets.token_urlsafe(32)
        expires = now + self.policy.refresh_ttl_seconds * 1000
        host_id = await self.store.rotate(
            token_hash(request.refresh_token.strip()), token_hash(refresh), now, expires
        )
        if host_id is None:
            raise Unauthenticated(SESSION_ENDED, Reason.ERROR_REASON_SESSION_ENDED)
        return account_pb2.RefreshSessionResponse(
            session=self._session(host_id, refresh, now, expires)
        )

    async def SignOut(
        self, request: account_pb2.SignOutRequest, context: Context
    ) -> account_pb2.SignOutResponse:
        # No token is needed; one that is sent must be valid, as everywhere.
        self.verifier.optional_caller(context)
        if not await self.store.end(token_hash(request.refresh_token.strip()), now_ms()):
            raise Unauthenticated(SESSION_ENDED, Reason.ERROR_REASON_SESSION_ENDED)
        return account_pb2.SignOutResponse()

    def _check_invite(self, code: str) -> None:
        match self.policy.sign_up:
            case "open":
                return
            case "closed":
                raise PermissionDenied(
                    "sign-up is closed here; ask the operator for an account",
                    Reason.ERROR_REASON_SIGN_UP_CLOSED,
                )
        given = code.strip().encode()
        if not any(hmac.compare_digest(given, c.encode()) for c in self.policy.invite_codes):
            raise PermissionDenied(
                "sign-up here needs an invite code, and this one is not valid"
                if given
                else "sign-up here needs an invite code (invite_code)",
                Reason.ERROR_REASON_SIGN_UP_CLOSED,
            )

    def _new_session(
        self, host_id: str, family: str, now: int
    ) -> tuple[account_pb2.Session, NewSession]:
        refresh = REFRESH_PREFIX + secrets.token_urlsafe(32)
        expires = now + self.policy.refresh_ttl_seconds * 1000
        row = NewSession(token_hash(refresh), family, host_id, now, expires)
        return self._session(host_id, refresh, now, expires), row

    def _session(
        self, host_id: str, refresh: str, now: int, refresh_expires_ms: int
    ) -> account_pb2.Session:
        ttl = self.policy.access_ttl_seconds
        return account_pb2.Session(
            access_token=self.issuer.issue(Role.HOST, host_id, ttl),
            access_expires_at=timestamp(now + ttl * 1000),
            refresh_token=refresh,
            refresh_expires_at=timestamp(refresh_expires_ms),
        )


def _address(context: Context) -> str:
    return client_address(context.invocation_metadata() or (), context.peer())
