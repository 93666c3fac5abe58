"""Identifiers: short quiz codes people can type, opaque player ids."""

from __future__ import annotations

import secrets

from services.mesh.errors import InvalidArgument

# No 0/O, 1/I/L: codes are read aloud and typed from a projector.
QUIZ_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
QUIZ_CODE_LENGTH = 8


def new_quiz_id() -> str:
    return "".join(secrets.choice(QUIZ_ALPHABET) for _ in range(QUIZ_CODE_LENGTH))


def new_player_id() -> str:
    return secrets.token_hex(8)


def quiz_code(value: str) -> str:
    """A quiz id from a request; codes are case-insensitive for people typing them."""
    code = value.strip().upper()
    if not code:
        raise InvalidArgument.field("quiz_id", "must not be empty")
    if len(code) > 16 or not code.isascii() or not code.isalnum():
        raise InvalidArgument.field("quiz_id", f"{value[:40]!r} is not a quiz code")
    return code


def player_ref(value: str) -> str:
    """A player id from a request (ids are 16 hex characters)."""
    if not value:
        raise InvalidArgument.field("player_id", "must not be empty")
    if len(value) > 32 or not value.isascii() or not value.isalnum():
        raise InvalidArgument.field("player_id", f"{value[:40]!r} is not a player id")
    return value
