"""The reference quiz and the client steps game tests share (join, answer, refused,
the expected points), over any Api (gRPC or HTTP/JSON)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from tests.api import Api, ApiError


def ms(rfc3339: str) -> int:
    ts = Timestamp()
    ts.FromJsonString(rfc3339)
    return ts.ToMilliseconds()


def expected_points(points: int, limit_ms: int, opened: str, answered: str) -> int:
    """docs/spec.md#scoring: round(points * (1 - elapsed / (2 * time_limit))), halves rounded up."""
    elapsed = max(0, ms(answered) - ms(opened))
    return math.floor(points * (1 - elapsed / (2 * limit_ms)) + 0.5)


async def refused(call: Any) -> ApiError:
    """The error a call must fail with (the test fails if it succeeds)."""
    try:
        await call
    except ApiError as e:
        return e
    raise AssertionError("the call should have been refused")


REFERENCE_QUIZ: dict[str, Any] = {
    "title": "Reference game",
    # A practice quiz: each reply tells its result, so a game test checks scoring
    # answer by answer. Results told at the close: tests/test_reveal_at_close.py.
    "instant_feedback": True,
    "questions": [
        # 1 point over 10 minutes: every correct answer earns exactly 1, so two
        # correct players tie and the earlier one must rank first.
        {
            "text": "2 + 2?",
            "choices": ["3", "4", "5"],
            "correct_choice": 1,
            "points": 1,
            "time_limit_ms": 600_000,
        },
        {
            "text": "Capital of France?",
            "choices": ["Paris", "Rome"],
            "correct_choice": 0,
            "points": 1000,
            "time_limit_ms": 4_000,
        },
        # Never reached: the host closes the quiz before it.
        {"text": "Largest planet?", "choices": ["Mars", "Jupiter"], "correct_choice": 1},
    ],
}


@dataclass
class Player:
    nickname: str
    player_id: str
    token: str


async def join(api: Api, quiz_id: str, nickname: str) -> Player:
    joined = await api.call("JoinQuiz", {"quiz_id": quiz_id, "nickname": nickname})
    return Player(nickname, joined["player_id"], joined["player_token"])


async def next_question(api: Api, quiz_id: str, host: str) -> Any:
    """The host moves on to the next question (or finishes after the last). An open
    question is first ended and revealed, which takes an AdvanceQuestion of its own."""
    before = (await api.call("GetQuiz", {"quiz_id": quiz_id}, host))["quiz"]["current_question"]
    quiz = (await api.call("AdvanceQuestion", {"quiz_id": quiz_id}, host))["quiz"]
    if quiz["state"] == "QUIZ_STATE_RUNNING" and quiz["current_question"] == before:
        quiz = (await api.call("AdvanceQuestion", {"quiz_id": quiz_id}, host))["quiz"]
    return quiz


async def answer(api: Api, p: Player, quiz_id: str, question: int, choice: int) -> Any:
    return await api.call(
        "SubmitAnswer",
        {"quiz_id": quiz_id, "question_index": question, "choice_index": choice},
        p.token,
    )
