"""Opaque page tokens (AIP-158): clients must not build them.

Every token is a cursor, the sort key of the page's last entry, so that the next
page starts right after it however the list moved meanwhile (an offset would show
an entry twice, or never, when one ahead of it moves or a new one arrives): on a
leaderboard the last entry's ranking key, on the quiz list the last quiz's
creation time and code.

Page sizes need no code here: the contracts bound them (0 means the default)
and the server interceptor refuses what is out of range before a handler runs."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

from services.mesh.errors import InvalidArgument

_CURSOR = re.compile(r"c(\d{1,10})\.(\d{1,13})\.([A-Za-z0-9]{1,64})")
_QUIZ_CURSOR = re.compile(r"q(\d{1,15})\.([A-Za-z0-9]{1,16})")


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a leaderboard page ended: its last entry's points, when they were reached
    (ms since the quiz's creation, as the live board counts) and player id."""

    score: int
    reached_ms: int
    player_id: str


def _encoded(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decoded(token: str) -> str | None:
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None


def _fields(token: str, pattern: re.Pattern[str]) -> re.Match[str] | None:
    """The fields of a cursor token (None for the first page), or INVALID_ARGUMENT."""
    if not token:
        return None
    match = pattern.fullmatch(_decoded(token) or "")
    if match is None:
        raise InvalidArgument.field(
            "page_token", "is not valid; use next_page_token from a previous response"
        )
    return match


def encode_cursor(cursor: Cursor) -> str:
    return _encoded(f"c{cursor.score}.{cursor.reached_ms}.{cursor.player_id}")


def decode_cursor(token: str) -> Cursor | None:
    """The cursor a token holds; None for the first page."""
    match = _fields(token, _CURSOR)
    return None if match is None else Cursor(int(match[1]), int(match[2]), match[3])


@dataclass(frozen=True, slots=True)
class QuizCursor:
    """Where a page of the quiz list (newest first) ended: its last quiz."""

    created_ms: int
    quiz_id: str


def encode_quiz_cursor(cursor: QuizCursor) -> str:
    return _encoded(f"q{cursor.created_ms}.{cursor.quiz_id}")


def decode_quiz_cursor(token: str) -> QuizCursor | None:
    """The cursor a token holds; None for the first page."""
    match = _fields(token, _QUIZ_CURSOR)
    return None if match is None else QuizCursor(int(match[1]), match[2])
