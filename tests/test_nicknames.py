"""Nicknames are what players see of each other: normalised, checked, unique in a
quiz (over native gRPC and through Envoy alike)."""

from __future__ import annotations

import grpc
import pytest

from tests.api import Api, GrpcApi, HttpApi
from tests.game import REFERENCE_QUIZ, refused
from tests.stack import Stack

pytestmark = pytest.mark.usefixtures("stack")


@pytest.fixture(params=["grpc", "http"])
def api(request: pytest.FixtureRequest, stack: Stack) -> Api:
    if request.param == "http":
        return HttpApi(request.getfixturevalue("http"))
    return GrpcApi(stack.channels)


@pytest.fixture
async def quiz_id(api: Api, stack: Stack) -> str:
    created = await api.call("CreateQuiz", REFERENCE_QUIZ, stack.host_token("alice"))
    return str(created["quiz"]["quiz_id"])


async def board_names(api: Api, quiz_id: str) -> list[str]:
    board = await api.call("GetLeaderboard", {"quiz_id": quiz_id, "page_size": 100})
    return sorted(entry["nickname"] for entry in board["entries"])


async def test_nicknames_are_trimmed_and_nfc_normalised(api: Api, quiz_id: str) -> None:
    await api.call("JoinQuiz", {"quiz_id": quiz_id, "nickname": "  Zoë \t"})
    await api.call("JoinQuiz", {"quiz_id": quiz_id, "nickname": "Jose\u0301"})  # e + accent

    assert await board_names(api, quiz_id) == ["José", "Zoë"]
    assert [len(name) for name in await board_names(api, quiz_id)] == [4, 3]


@pytest.mark.parametrize(
    "taken",
    # The same name composed or not, padded or not, in other case or width.
    ["Zoë", "Zoe\u0308", " Zoë ", "ZOË", "zoë", "\uff3a\uff4f\u00eb"],
)
async def test_a_nickname_is_taken_once_per_quiz_however_it_is_written(
    api: Api, stack: Stack, quiz_id: str, taken: str
) -> None:
    await api.call("JoinQuiz", {"quiz_id": quiz_id, "nickname": "Zoë"})
    other_quiz = (await api.call("CreateQuiz", REFERENCE_QUIZ, stack.host_token("alice")))["quiz"]

    error = await refused(api.call("JoinQuiz", {"quiz_id": quiz_id, "nickname": taken}))
    await api.call("JoinQuiz", {"quiz_id": other_quiz["quiz_id"], "nickname": taken})

    assert error.code == grpc.StatusCode.ALREADY_EXISTS
    assert await board_names(api, quiz_id) == ["Zoë"]


@pytest.mark.parametrize(
    ("nickname", "problem"),
    [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("x" * 33, "must be between 1 and 32 characters, got 33"),
        ("bell\u0007", "must not contain control or invisible characters"),
        ("zero\u200bwidth", "must not contain control or invisible characters"),
        ("\u202eevil", "must not contain control or invisible characters"),  # bidi override
        ("line\nbreak", "must not contain control or invisible characters"),
    ],
)
async def test_a_bad_nickname_is_refused_by_name_and_nobody_joins(
    api: Api, quiz_id: str, nickname: str, problem: str
) -> None:
    error = await refused(api.call("JoinQuiz", {"quiz_id": quiz_id, "nickname": nickname}))

    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.violations == [("nickname", problem)]
    assert await board_names(api, quiz_id) == []


async def test_names_that_differ_only_in_accents_belong_to_two_players(
    api: Api, quiz_id: str
) -> None:
    await api.call("JoinQuiz", {"quiz_id": quiz_id, "nickname": "José"})
    await api.call("JoinQuiz", {"quiz_id": quiz_id, "nickname": "Jose"})

    assert await board_names(api, quiz_id) == ["Jose", "José"]
