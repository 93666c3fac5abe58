"""What a quiz's live state holds: the fields of its state hash, the record formats
of its questions and answers, and how a score and the time it was reached share
one sorted-set value. The Lua scripts beside this module (scripts/*.lua) read and
write exactly these; tests/test_live_layout.py round-trips every one through them.

A leaderboard is one sorted set whose member score packs two numbers into a
double: `points * SCALE - reached_ms`, where reached_ms counts milliseconds since
the quiz was created (the state's `epoch`). Higher points rank first; among equal
points, whoever reached them earlier ranks first. The value stays an exact integer
below 2**53 as long as points < 2**22 and a quiz lives less than 2**31 ms (24 days).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from redis.typing import EncodableT

from services.database.records import Question, QuizRecord

SCALE = 2**31
MAX_POINTS = 2**22 - 1


def pack(points: int, reached_ms: int) -> float:
    return float(points * SCALE - reached_ms)


def points_of(packed: float) -> int:
    return math.ceil(packed / SCALE)


def reached_of(packed: float) -> int:
    """The reached_ms a packed score was made with (pack's inverse, with points_of)."""
    return int(points_of(packed) * SCALE - packed)


class Field(StrEnum):
    """The fields of a quiz's state hash."""

    # services.database.records.QuizState: OPEN, RUNNING or CLOSED.
    STATUS = "status"
    # Index of the open (or last opened) question; -1 before the start.
    QUESTION = "question"
    # When the current question opened and when it stops taking answers (ms).
    OPENED_AT = "opened_at"
    DEADLINE = "deadline"
    # When the quiz was created (ms): board times count from here.
    EPOCH = "epoch"
    HOST = "host"
    QUESTION_COUNT = "question_count"
    # Grows with every change watchers can see (answers, joins, lifecycle).
    VERSION = "version"
    # When a score last changed (ms), for the answer-to-watcher latency.
    CHANGED_AT = "changed_at"
    CLOSED_AT = "closed_at"
    # 1: answers' results and the board move at once (a practice quiz); 0: they
    # wait in the pending set until their question closes.
    INSTANT_FEEDBACK = "instant_feedback"
    # Copies of the board elsewhere (BoardUpdate in events.proto): the board's
    # generation (new when the live state is made or rebuilt) and the number of
    # the last update taken from it.
    BOARD_GENERATION = "board_generation"
    BOARD_SEQUENCE = "board_sequence"


def answer_count_field(question: int) -> str:
    """State field: how many answers question `question` has accepted."""
    return f"answers:{question}"


def choice_count_field(question: int, choice: int) -> str:
    """State field: how many accepted answers to `question` chose `choice`."""
    return f"choices:{question}:{choice}"


def answer_field(question: int, player_id: str) -> str:
    """Field of the answers hash holding one player's answer to one question."""
    return f"{question}:{player_id}"


@dataclass(frozen=True, slots=True)
class QuestionSpec:
    """What the answer script needs of a question: "correct|points|limit_ms|choices"."""

    correct_choice: int
    points: int
    time_limit_ms: int
    choices: int

    @classmethod
    def of(cls, q: Question) -> QuestionSpec:
        return cls(q.correct_choice, q.points, q.time_limit_ms, len(q.choices))

    @classmethod
    def parse(cls, record: str) -> QuestionSpec:
        correct, points, limit, choices = record.split("|")
        return cls(int(correct), int(points), int(limit), int(choices))

    def record(self) -> str:
        return f"{self.correct_choice}|{self.points}|{self.time_limit_ms}|{self.choices}"


@dataclass(frozen=True, slots=True)
class Answer:
    """An accepted answer: "choice|correct (1/0)|points|answered_ms"."""

    question_index: int
    choice_index: int
    correct: bool
    points_awarded: int
    answered_ms: int

    @classmethod
    def parse(cls, question_index: int, record: str) -> Answer:
        choice, correct, points, answered = record.split("|")
        return cls(question_index, int(choice), correct == "1", int(points), int(answered))

    def record(self) -> str:
        return f"{self.choice_index}|{int(self.correct)}|{self.points_awarded}|{self.answered_ms}"


def state_fields(quiz: QuizRecord) -> dict[EncodableT, EncodableT]:
    """The state hash of a quiz as its SQL row describes it (without the version
    and the per-question counts, which only the live state knows)."""
    return {
        Field.STATUS: quiz.state.value,
        Field.QUESTION: quiz.current_question,
        Field.OPENED_AT: quiz.question_opened_ms or 0,
        Field.DEADLINE: quiz.question_deadline_ms or 0,
        Field.EPOCH: quiz.created_ms,
        Field.HOST: quiz.host,
        Field.QUESTION_COUNT: quiz.question_count,
        Field.INSTANT_FEEDBACK: int(quiz.instant_feedback),
    }


def withheld_question(state: dict[str, str], now: int) -> int | None:
    """The question whose answers' results are not told yet at `now` (the open
    one, unless the quiz has instant feedback), or None. The answer script applies
    the same rule to the result it returns."""
    if state.get(Field.INSTANT_FEEDBACK) == "1" or state.get(Field.STATUS) != "RUNNING":
        return None
    if now > int(state.get(Field.DEADLINE) or 0):
        return None
    return int(state.get(Field.QUESTION) or -1)


def question_specs(qs: list[Question]) -> dict[EncodableT, EncodableT]:
    return {str(q.index): QuestionSpec.of(q).record() for q in qs}
