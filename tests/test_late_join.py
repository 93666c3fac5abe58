"""Joining under the host's control: a quiz that lets players join while it runs
(late joiners start from 0 and play on from the open question), and a lobby the
host locks and unlocks; over gRPC and HTTP through Envoy."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest

from tests.api import Api, ApiError
from tests.game import join
from tests.stack import Stack

QUIZ: dict[str, Any] = {
    "title": "Late joiners welcome",
    "instant_feedback": True,
    "allow_late_join": True,
    "questions": [
        {"text": "1?", "choices": ["a", "b"], "correct_choice": 0, "time_limit_ms": 600_000},
        {"text": "2?", "choices": ["a", "b"], "correct_choice": 1, "time_limit_ms": 600_000},
    ],
}


@pytest.fixture
def api(either_api: Api) -> Api:
    return either_api


@pytest.fixture
def host(stack: Stack) -> str:
    return stack.host_token(f"late-host-{uuid.uuid4().hex[:6]}")


async def refused(call: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        await call
    return caught.value


async def board(api: Api, quiz_id: str) -> list[tuple[str, int]]:
    page = await api.call("GetLeaderboard", {"quiz_id": quiz_id, "page_size": 100})
    return [(e["nickname"], int(e["score"])) for e in page["entries"]]


async def test_a_late_joiner_starts_from_zero_and_plays_on(api: Api, host: str) -> None:
    quiz_id = (await api.call("CreateQuiz", QUIZ, host))["quiz"]["quiz_id"]
    early = await join(api, quiz_id, "early")
    await api.call("StartQuiz", {"quiz_id": quiz_id}, host)
    await api.call(
        "SubmitAnswer", {"quiz_id": quiz_id, "question_index": 0, "choice_index": 0}, early.token
    )
    await api.call("AdvanceQuestion", {"quiz_id": quiz_id}, host)  # reveal question 1
    await api.call("AdvanceQuestion", {"quiz_id": quiz_id}, host)  # open question 2

    late = await join(api, quiz_id, "late")
    # Question 1 is over for them; question 2 is open.
    missed = await refused(
        api.call(
            "SubmitAnswer", {"quiz_id": quiz_id, "question_index": 0, "choice_index": 0}, late.token
        )
    )
    answered = (
        await api.call(
            "SubmitAnswer",
            {"quiz_id": quiz_id, "question_index": 1, "choice_index": 1},
            late.token,
        )
    )["result"]

    assert missed.reason == "QUESTION_CLOSED"
    assert answered["correct"] is True
    score = await api.call(
        "GetPlayerScore", {"quiz_id": quiz_id, "player_id": late.player_id}, late.token
    )
    assert int(score["score"]) == int(answered["points_awarded"]) > 0
    assert {name for name, _ in await board(api, quiz_id)} == {"early", "late"}


async def test_without_late_joining_a_started_quiz_refuses_joins(api: Api, host: str) -> None:
    quiz_id = (await api.call("CreateQuiz", {**QUIZ, "allow_late_join": False}, host))["quiz"][
        "quiz_id"
    ]
    await api.call("StartQuiz", {"quiz_id": quiz_id}, host)

    error = await refused(api.call("JoinQuiz", {"quiz_id": quiz_id, "nickname": "late"}))

    assert (error.code, error.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "QUIZ_ALREADY_STARTED",
    )


async def test_a_locked_lobby_refuses_joins_until_it_is_unlocked(api: Api, host: str) -> None:
    quiz_id = (await api.call("CreateQuiz", QUIZ, host))["quiz"]["quiz_id"]
    await join(api, quiz_id, "inside")

    locked = (await api.call("SetLobby", {"quiz_id": quiz_id, "locked": True}, host))["quiz"]
    refused_join = await refused(api.call("JoinQuiz", {"quiz_id": quiz_id, "nickname": "door"}))
    await api.call("StartQuiz", {"quiz_id": quiz_id}, host)
    still = await refused(api.call("JoinQuiz", {"quiz_id": quiz_id, "nickname": "door"}))
    opened = (await api.call("SetLobby", {"quiz_id": quiz_id, "locked": False}, host))["quiz"]
    await join(api, quiz_id, "door")

    assert locked["lobby_locked"] is True
    assert opened["lobby_locked"] is False
    for error in (refused_join, still):
        assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "LOBBY_LOCKED")
        assert "locked" in error.message
    assert {name for name, _ in await board(api, quiz_id)} == {"inside", "door"}


async def test_only_the_host_locks_and_a_closed_quiz_has_no_lobby(
    api: Api, host: str, stack: Stack
) -> None:
    quiz_id = (await api.call("CreateQuiz", QUIZ, host))["quiz"]["quiz_id"]
    player = await join(api, quiz_id, "p")

    by_player = await refused(
        api.call("SetLobby", {"quiz_id": quiz_id, "locked": True}, player.token)
    )
    by_other = await refused(
        api.call("SetLobby", {"quiz_id": quiz_id, "locked": True}, stack.host_token("someone"))
    )
    unsaid = await refused(api.call("SetLobby", {"quiz_id": quiz_id}, host))
    await api.call("CloseQuiz", {"quiz_id": quiz_id}, host)
    closed = await refused(api.call("SetLobby", {"quiz_id": quiz_id, "locked": True}, host))

    assert (by_player.code, by_other.code) == (grpc.StatusCode.PERMISSION_DENIED,) * 2
    assert [f for f, _ in unsaid.violations] == ["locked"]  # required: never read as false
    assert closed.reason == "QUIZ_CLOSED"
    quiz = (await api.call("GetQuiz", {"quiz_id": quiz_id}, host))["quiz"]
    assert quiz["lobby_locked"] is False


async def test_a_library_quiz_that_allows_late_joining_makes_games_that_do(
    api: Api, host: str
) -> None:
    made = (await api.call("CreateLibraryQuiz", QUIZ, host))["library_quiz"]

    game = (await api.call("PlayLibraryQuiz", {"library_quiz_id": made["library_quiz_id"]}, host))[
        "quiz"
    ]

    assert made["allow_late_join"] is True
    assert game["allow_late_join"] is True
