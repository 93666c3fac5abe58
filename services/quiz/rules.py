"""What a well-formed quiz and nickname are, beyond the field limits the contract
declares (proto/quizmesh/quiz/v1/quiz.proto, checked by the server interceptor):
rules that span fields, defaults, and how a nickname is normalised."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from quizmesh.quiz.v1 import quiz_pb2

from services.live.layout import MAX_POINTS
from services.mesh.errors import InvalidArgument
from services.mesh.validation import rules_of

DEFAULT_POINTS = 1000
DEFAULT_TIME_LIMIT_MS = 20_000
MAX_QUESTIONS = rules_of(quiz_pb2.CreateQuizRequest.DESCRIPTOR, "questions").max_items
MAX_QUESTION_POINTS = rules_of(quiz_pb2.QuestionSpec.DESCRIPTOR, "points").lte
MAX_NICKNAME = rules_of(quiz_pb2.JoinQuizRequest.DESCRIPTOR, "nickname").max_len

# Every score must stay exact inside a Redis double (see services/live/layout.py).
assert MAX_QUESTIONS * MAX_QUESTION_POINTS <= MAX_POINTS


def check_questions(questions: Sequence[quiz_pb2.QuestionSpec]) -> None:
    """What the contract's field rules cannot say: each correct choice is a choice."""
    for i, q in enumerate(questions):
        if q.correct_choice >= len(q.choices):
            raise InvalidArgument.field(
                f"questions[{i}].correct_choice",
                f"must be between 0 and {len(q.choices) - 1} (one of its {len(q.choices)} "
                f"choices), got {q.correct_choice}",
            )


def points_of(q: quiz_pb2.QuestionSpec) -> int:
    return q.points if q.HasField("points") else DEFAULT_POINTS


def time_limit_of(q: quiz_pb2.QuestionSpec) -> int:
    return q.time_limit_ms if q.HasField("time_limit_ms") else DEFAULT_TIME_LIMIT_MS


def nickname(value: str) -> str:
    """The nickname as stored: NFC-normalised, trimmed, without control characters."""
    cleaned = unicodedata.normalize("NFC", value).strip()
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn") for c in cleaned):
        raise InvalidArgument.field("nickname", "must not contain control or invisible characters")
    if not cleaned:
        raise InvalidArgument.field("nickname", "must not be empty")
    if len(cleaned) > MAX_NICKNAME:
        # NFC can only shorten a string; this guards the rule's own definition.
        raise InvalidArgument.field(
            "nickname", f"must be at most {MAX_NICKNAME} characters, got {len(cleaned)}"
        )
    return cleaned
