"""The quiz library: a host's quizzes kept apart from their games, over gRPC and
HTTP through Envoy. A quiz is played any number of times; editing or deleting it
never changes a game already made from it."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import grpc
import pytest

from tests.api import Api, ApiError
from tests.stack import Stack

QUIZ: dict[str, Any] = {
    "title": "Capitals",
    "questions": [
        {"text": "Capital of France?", "choices": ["Paris", "Lyon"], "correct_choice": 0},
        {
            "text": "Capital of Japan?",
            "choices": ["Osaka", "Tokyo", "Kyoto"],
            "correct_choice": 1,
            "points": 500,
            "time_limit_ms": 30_000,
        },
    ],
}


@pytest.fixture
def api(either_api: Api) -> Api:
    return either_api


@pytest.fixture
def host(stack: Stack) -> str:
    return stack.host_token(f"librarian-{uuid.uuid4().hex[:8]}")


async def refused(call: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        await call
    return caught.value


async def add(api: Api, host: str, quiz: dict[str, Any] = QUIZ) -> dict[str, Any]:
    made = await api.call("CreateLibraryQuiz", quiz, host)
    return dict(made["library_quiz"])


async def test_a_library_quiz_keeps_what_the_host_wrote(api: Api, host: str) -> None:
    made = await add(api, host)

    got = (await api.call("GetLibraryQuiz", {"library_quiz_id": made["library_quiz_id"]}, host))[
        "library_quiz"
    ]

    assert got["title"] == "Capitals"
    assert (got["version"], got["question_count"], got["games_played"]) in (
        (1, 2, 0),
        ("1", 2, 0),  # int64 is a string in JSON
    )
    first, second = got["questions"]
    assert first["text"] == "Capital of France?"
    assert "points" not in first or first["points"] is None  # unset stays unset: the default
    assert (second["points"], second["time_limit_ms"]) == (500, 30_000)


async def test_a_quiz_is_played_twice_as_two_games_of_its_own(api: Api, host: str) -> None:
    made = await add(api, host)
    ref = {"library_quiz_id": made["library_quiz_id"]}

    first = (await api.call("PlayLibraryQuiz", ref, host))["quiz"]
    second = (await api.call("PlayLibraryQuiz", ref, host))["quiz"]

    assert first["quiz_id"] != second["quiz_id"]
    for game in (first, second):
        assert game["state"] == "QUIZ_STATE_OPEN"
        assert game["library_quiz_id"] == made["library_quiz_id"]
        assert [q["text"] for q in game["questions"]] == ["Capital of France?", "Capital of Japan?"]
        # Defaults are a game's: 1000 points and 20 s where the quiz left them unset.
        assert [q["points"] for q in game["questions"]] == [1000, 500]
    again = (await api.call("GetLibraryQuiz", ref, host))["library_quiz"]
    assert again["games_played"] == 2


async def test_editing_a_quiz_never_changes_a_game_already_made(api: Api, host: str) -> None:
    made = await add(api, host)
    ref = {"library_quiz_id": made["library_quiz_id"]}
    game = (await api.call("PlayLibraryQuiz", ref, host))["quiz"]
    edited = copy.deepcopy(QUIZ)
    edited["title"] = "Capitals, harder"
    edited["questions"][0]["text"] = "Capital of Australia?"
    edited["questions"][0]["choices"] = ["Sydney", "Canberra"]
    edited["questions"][0]["correct_choice"] = 1

    saved = (await api.call("UpdateLibraryQuiz", {**ref, **edited, "expected_version": 1}, host))[
        "library_quiz"
    ]

    assert saved["title"] == "Capitals, harder"
    assert int(saved["version"]) == 2
    played = (await api.call("GetQuiz", {"quiz_id": game["quiz_id"]}, host))["quiz"]
    assert played["title"] == "Capitals"
    assert played["questions"][0]["text"] == "Capital of France?"
    newer = (await api.call("PlayLibraryQuiz", ref, host))["quiz"]
    assert newer["questions"][0]["text"] == "Capital of Australia?"


async def test_an_edit_from_a_stale_version_is_refused_and_saves_nothing(
    api: Api, host: str
) -> None:
    made = await add(api, host)
    ref = {"library_quiz_id": made["library_quiz_id"]}
    await api.call("UpdateLibraryQuiz", {**ref, **QUIZ, "title": "Tab one"}, host)

    stale = await refused(
        api.call(
            "UpdateLibraryQuiz", {**ref, **QUIZ, "title": "Tab two", "expected_version": 1}, host
        )
    )

    assert (stale.code, stale.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "QUIZ_CHANGED")
    assert "saved meanwhile" in stale.message
    kept = (await api.call("GetLibraryQuiz", ref, host))["library_quiz"]
    assert (kept["title"], int(kept["version"])) == ("Tab one", 2)


async def test_a_duplicate_is_a_quiz_of_its_own(api: Api, host: str) -> None:
    made = await add(api, host)
    ref = {"library_quiz_id": made["library_quiz_id"]}

    copied = (await api.call("DuplicateLibraryQuiz", ref, host))["library_quiz"]
    named = (await api.call("DuplicateLibraryQuiz", {**ref, "title": "Mine"}, host))["library_quiz"]
    await api.call(
        "UpdateLibraryQuiz",
        {"library_quiz_id": copied["library_quiz_id"], **QUIZ, "title": "Changed copy"},
        host,
    )

    assert copied["title"] == "Copy of Capitals"
    assert named["title"] == "Mine"
    assert copied["questions"] == made["questions"]
    original = (await api.call("GetLibraryQuiz", ref, host))["library_quiz"]
    assert original["title"] == "Capitals"


async def test_deleting_a_quiz_leaves_its_games(api: Api, host: str) -> None:
    made = await add(api, host)
    ref = {"library_quiz_id": made["library_quiz_id"]}
    game = (await api.call("PlayLibraryQuiz", ref, host))["quiz"]

    await api.call("DeleteLibraryQuiz", ref, host)

    gone = await refused(api.call("GetLibraryQuiz", ref, host))
    assert (gone.code, gone.reason) == (grpc.StatusCode.NOT_FOUND, "LIBRARY_QUIZ_NOT_FOUND")
    again = await refused(api.call("PlayLibraryQuiz", ref, host))
    assert again.reason == "LIBRARY_QUIZ_NOT_FOUND"
    kept = (await api.call("GetQuiz", {"quiz_id": game["quiz_id"]}, host))["quiz"]
    assert kept["title"] == "Capitals"


async def test_the_library_lists_the_hosts_own_quizzes_newest_change_first_in_pages(
    api: Api, host: str, stack: Stack
) -> None:
    ids = [(await add(api, host, {**QUIZ, "title": f"Q{i}"}))["library_quiz_id"] for i in range(5)]
    await add(api, stack.host_token(f"other-{uuid.uuid4().hex[:8]}"))
    # Changing the oldest brings it to the front.
    await api.call("UpdateLibraryQuiz", {"library_quiz_id": ids[0], **QUIZ, "title": "Q0'"}, host)

    seen: list[str] = []
    page_token = ""
    while True:
        page = await api.call(
            "ListLibraryQuizzes", {"page_size": 2, "page_token": page_token}, host
        )
        seen += [q["title"] for q in page["library_quizzes"]]
        assert all(not q["questions"] for q in page["library_quizzes"])
        page_token = page["next_page_token"]
        if not page_token:
            break

    assert seen == ["Q0'", "Q4", "Q3", "Q2", "Q1"]


async def test_only_the_owner_reaches_a_library_quiz(api: Api, host: str, stack: Stack) -> None:
    made = await add(api, host)
    ref = {"library_quiz_id": made["library_quiz_id"]}
    other = stack.host_token(f"other-{uuid.uuid4().hex[:8]}")

    for rpc, request in (
        ("GetLibraryQuiz", ref),
        ("PlayLibraryQuiz", ref),
        ("DeleteLibraryQuiz", ref),
        ("UpdateLibraryQuiz", {**ref, **QUIZ, "title": "Taken over"}),
    ):
        error = await refused(api.call(rpc, request, other))
        assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_THE_HOST")
    mine = (await api.call("GetLibraryQuiz", ref, host))["library_quiz"]
    assert mine["title"] == "Capitals"


async def test_a_correct_choice_beyond_the_choices_is_refused_naming_it(
    api: Api, host: str
) -> None:
    bad = copy.deepcopy(QUIZ)
    bad["questions"][1]["correct_choice"] = 3

    error = await refused(api.call("CreateLibraryQuiz", bad, host))

    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in error.violations] == ["questions[1].correct_choice"]
