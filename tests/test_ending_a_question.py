"""The host moves on before time is up: AdvanceQuestion on an open question ends it
there and reveals it on every screen (its question_closed, with the correct
choice, reaches every watcher); the next AdvanceQuestion opens the next question,
or after the last one finishes the quiz. However a question ends, its reveal is
shown before anything else."""

from __future__ import annotations

import grpc
import pytest

from tests.api import Api, GrpcApi, HttpApi
from tests.game import join, refused
from tests.stack import Stack

pytestmark = pytest.mark.usefixtures("stack")

QUIZ = {
    "title": "Early",
    "questions": [
        {"text": "q", "choices": ["a", "b"], "correct_choice": 1, "time_limit_ms": 600_000},
        {"text": "r", "choices": ["a", "b"], "correct_choice": 0, "time_limit_ms": 600_000},
    ],
}


@pytest.fixture(params=["grpc", "http"])
def api(request: pytest.FixtureRequest, stack: Stack) -> Api:
    if request.param == "http":
        return HttpApi(request.getfixturevalue("http"))
    return GrpcApi(stack.channels)


def kinds(events: list[dict[str, object]]) -> list[str]:
    lifecycle = ("quiz_started", "question_opened", "question_closed", "quiz_closed")
    return [k for e in events for k in lifecycle if k in e]


async def test_next_before_the_deadline_reveals_the_question_then_moves_on(
    api: Api, stack: Stack
) -> None:
    host = stack.host_token("alice")
    quiz_id = str((await api.call("CreateQuiz", QUIZ, host))["quiz"]["quiz_id"])
    pia, sam = await join(api, quiz_id, "pia"), await join(api, quiz_id, "sam")
    await api.call("StartQuiz", {"quiz_id": quiz_id}, host)
    await api.call(
        "SubmitAnswer", {"quiz_id": quiz_id, "question_index": 0, "choice_index": 1}, pia.token
    )

    ended = (await api.call("AdvanceQuestion", {"quiz_id": quiz_id}, host))["quiz"]
    late = await refused(
        api.call(
            "SubmitAnswer", {"quiz_id": quiz_id, "question_index": 0, "choice_index": 1}, sam.token
        )
    )
    moved_on = (await api.call("AdvanceQuestion", {"quiz_id": quiz_id}, host))["quiz"]
    last_ended = (await api.call("AdvanceQuestion", {"quiz_id": quiz_id}, host))["quiz"]
    finished = (await api.call("AdvanceQuestion", {"quiz_id": quiz_id}, host))["quiz"]

    assert ended["current_question"] == 0
    assert ended["questions"][0]["correct_choice"] == 1  # revealed to everyone now
    assert late.code == grpc.StatusCode.FAILED_PRECONDITION
    assert late.reason == "ANSWER_TOO_LATE"
    assert moved_on["current_question"] == 1
    assert last_ended["current_question"] == 1
    assert last_ended["state"] == "QUIZ_STATE_RUNNING"
    assert finished["state"] == "QUIZ_STATE_CLOSED"

    events = []
    async for message in api.watch("WatchQuiz", {"quiz_id": quiz_id}):
        if message.get("event"):
            events.append(message["event"])
        if kinds(events)[-1:] == ["quiz_closed"]:
            break
    assert kinds(events) == [
        "quiz_started",
        "question_opened",
        "question_closed",
        "question_opened",
        "question_closed",
        "quiz_closed",
    ]
    closed = [e["question_closed"] for e in events if "question_closed" in e]
    assert [(c["index"], c["correct_choice"]) for c in closed] == [(0, 1), (1, 0)]
