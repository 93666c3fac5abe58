"""What a well-formed quiz and nickname are; refusals name the offending field."""

from __future__ import annotations

import unicodedata

from quizmesh.quiz.v1 import quiz_pb2

from services.core.board import MAX_POINTS
from services.core.errors import InvalidArgument

DEFAULT_POINTS = 1000
DEFAULT_TIME_LIMIT_MS = 20_000
MAX_QUESTIONS = 100
MAX_TITLE = 200
MAX_TEXT = 500
MAX_CHOICE = 200
MIN_CHOICES, MAX_CHOICES = 2, 6
MAX_QUESTION_POINTS = 10_000
MIN_TIME_LIMIT_MS, MAX_TIME_LIMIT_MS = 1_000, 600_000
MAX_NICKNAME = 32

# Every score must stay exact inside a Redis double (see services/core/board.py).
assert MAX_QUESTIONS * MAX_QUESTION_POINTS <= MAX_POINTS


def _text(value: str, field: str, maximum: int) -> str:
    cleaned = value.strip()
    if not cleaned:
        raise InvalidArgument(f"{field} must not be empty")
    if len(cleaned) > maximum:
        raise InvalidArgument(f"{field} must be at most {maximum} characters, got {len(cleaned)}")
    return cleaned


def check_quiz(request: quiz_pb2.CreateQuizRequest) -> None:
    _text(request.title, "title", MAX_TITLE)
    if not 1 <= len(request.questions) <= MAX_QUESTIONS:
        raise InvalidArgument(
            f"questions: a quiz needs 1 to {MAX_QUESTIONS} questions, got {len(request.questions)}"
        )
    for i, q in enumerate(request.questions):
        at = f"questions[{i}]"
        _text(q.text, f"{at}.text", MAX_TEXT)
        if not MIN_CHOICES <= len(q.choices) <= MAX_CHOICES:
            raise InvalidArgument(
                f"{at}.choices: needs {MIN_CHOICES} to {MAX_CHOICES} choices, got {len(q.choices)}"
            )
        for j, choice in enumerate(q.choices):
            _text(choice, f"{at}.choices[{j}]", MAX_CHOICE)
        if not 0 <= q.correct_choice < len(q.choices):
            raise InvalidArgument(
                f"{at}.correct_choice must be between 0 and {len(q.choices) - 1}, "
                f"got {q.correct_choice}"
            )
        if q.HasField("points") and not 0 <= q.points <= MAX_QUESTION_POINTS:
            raise InvalidArgument(
                f"{at}.points must be between 0 and {MAX_QUESTION_POINTS}, got {q.points}"
            )
        if q.HasField("time_limit_ms") and not (
            MIN_TIME_LIMIT_MS <= q.time_limit_ms <= MAX_TIME_LIMIT_MS
        ):
            raise InvalidArgument(
                f"{at}.time_limit_ms must be between {MIN_TIME_LIMIT_MS} and "
                f"{MAX_TIME_LIMIT_MS}, got {q.time_limit_ms}"
            )


def points_of(q: quiz_pb2.QuestionSpec) -> int:
    return q.points if q.HasField("points") else DEFAULT_POINTS


def time_limit_of(q: quiz_pb2.QuestionSpec) -> int:
    return q.time_limit_ms if q.HasField("time_limit_ms") else DEFAULT_TIME_LIMIT_MS


def nickname(value: str) -> str:
    """The nickname as stored: NFC-normalised, trimmed, without control characters."""
    cleaned = unicodedata.normalize("NFC", value).strip()
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn") for c in cleaned):
        raise InvalidArgument("nickname must not contain control or invisible characters")
    return _text(cleaned, "nickname", MAX_NICKNAME)
