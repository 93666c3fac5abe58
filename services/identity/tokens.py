"""Identity: signed ES256 tokens for hosts and players.

Envoy verifies tokens at the edge, but every service verifies them again: a
service never trusts an identity header or a user id in a request body.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from services.identity.keys import ALGORITHM, key_id
from services.mesh.config import CommonSettings
from services.mesh.context import Context
from services.mesh.errors import PermissionDenied, Reason, Unauthenticated


class Role(StrEnum):
    HOST = "host"
    PLAYER = "player"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling, as proven by a verified token."""

    role: Role
    subject: str
    quiz_id: str | None = None  # players belong to exactly one quiz

    def require_host(self) -> Caller:
        if self.role is not Role.HOST:
            raise PermissionDenied(
                "only a host may do this; sign in with a host token", Reason.ERROR_REASON_HOST_ONLY
            )
        return self

    def require_player_of(self, quiz_id: str) -> Caller:
        if self.role is not Role.PLAYER or self.quiz_id != quiz_id:
            raise PermissionDenied(
                f"only a player of quiz {quiz_id} may do this", Reason.ERROR_REASON_NOT_A_PLAYER
            )
        return self


class TokenVerifier:
    """Checks signature, expiry, issuer and audience against a JWKS."""

    def __init__(self, jwks: dict[str, Any], issuer: str, audience: str) -> None:
        self._keys = {k.key_id: k for k in jwt.PyJWKSet.from_dict(jwks).keys}
        self._issuer = issuer
        self._audience = audience

    @classmethod
    def from_file(cls, path: Path, issuer: str, audience: str) -> TokenVerifier:
        return cls(json.loads(path.read_text()), issuer, audience)

    @classmethod
    def of(cls, settings: CommonSettings) -> TokenVerifier:
        """The verifier of a service's settings (its JWKS, issuer and audience)."""
        return cls.from_file(settings.jwks_file, settings.token_issuer, settings.token_audience)

    def verify(self, token: str) -> Caller:
        return self.verified(token)[0]

    def verified(self, token: str) -> tuple[Caller, float]:
        """The token's caller and its expiry (epoch seconds), once the token is
        proven; UNAUTHENTICATED otherwise."""
        try:
            key = self._keys.get(_key_id(token))
            if key is None:
                raise Unauthenticated(
                    "token was signed by an unknown key", Reason.ERROR_REASON_TOKEN_INVALID
                )
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[ALGORITHM],
                issuer=self._issuer,
                audience=self._audience,
                options={"require": ["exp", "sub", "role"]},
            )
        except jwt.ExpiredSignatureError as e:
            raise Unauthenticated(
                "token has expired; get a new one", Reason.ERROR_REASON_TOKEN_EXPIRED
            ) from e
        except jwt.InvalidTokenError as e:
            raise Unauthenticated(f"invalid token: {e}", Reason.ERROR_REASON_TOKEN_INVALID) from e
        try:
            role = Role(claims["role"])
        except ValueError as e:
            raise Unauthenticated(
                "token carries an unknown role", Reason.ERROR_REASON_TOKEN_INVALID
            ) from e
        quiz_id = claims.get("quiz")
        if role is Role.PLAYER and not quiz_id:
            raise Unauthenticated("player token names no quiz", Reason.ERROR_REASON_TOKEN_INVALID)
        return Caller(role=role, subject=str(claims["sub"]), quiz_id=quiz_id), float(claims["exp"])

    def caller(self, context: Context, fallback_token: str = "") -> Caller:
        """The verified caller of an RPC; UNAUTHENTICATED when there is none."""
        caller = self.optional_caller(context, fallback_token)
        if caller is None:
            raise Unauthenticated(
                "sign in: this call needs a bearer token", Reason.ERROR_REASON_TOKEN_MISSING
            )
        return caller

    def optional_caller(self, context: Context, fallback_token: str = "") -> Caller | None:
        token = bearer_token(context.invocation_metadata() or ()) or fallback_token
        return self.verify(token) if token else None


def _key_id(token: str) -> Any:
    """The `kid` of a token's header, read to pick the key before anything is proven
    (jwt.decode then checks the whole header): a tenth of what PyJWT's own
    get_unverified_header costs, which a stadium's first answers pay a million times."""
    head = token.partition(".")[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, binascii.Error) as e:
        raise jwt.DecodeError("the header is not base64url-encoded JSON") from e
    if not isinstance(header, dict):
        raise jwt.DecodeError("the header is not a JSON object")
    return header.get("kid")


def bearer_token(metadata: Iterable[tuple[str, str | bytes]]) -> str:
    for key, value in metadata:
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    return ""


class TokenIssuer:
    """Signs tokens with the private key whose public half is in the JWKS."""

    def __init__(self, private_key_pem: bytes, issuer: str, audience: str) -> None:
        key = serialization.load_pem_private_key(private_key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("the signing key must be an EC P-256 key")
        self._key = key
        self._kid = key_id(key.public_key())
        self._issuer = issuer
        self._audience = audience

    @classmethod
    def from_file(cls, path: Path, issuer: str, audience: str) -> TokenIssuer:
        return cls(path.read_bytes(), issuer, audience)

    @classmethod
    def of(cls, settings: CommonSettings) -> TokenIssuer:
        """The issuer of a service's settings (its signing key, issuer and audience)."""
        return cls.from_file(
            settings.signing_key_file, settings.token_issuer, settings.token_audience
        )

    def issue(self, role: Role, subject: str, ttl_seconds: int, quiz_id: str | None = None) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": subject,
            "role": role.value,
            "iat": now,
            "exp": now + ttl_seconds,
        }
        if quiz_id is not None:
            claims["quiz"] = quiz_id
        return jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self._kid})
