"""docs/spec.md#visibility: by default nobody learns who got a question right before
it closes. While it is open, the answering player is told only that the answer was
received (and its choice), and the board, own ranks and scores stay as they were;
when it closes (deadline, host ending it, quiz closed) everything moves at once,
before its question_closed reaches watchers. A practice quiz (instant_feedback)
tells at once. Over gRPC and HTTP/JSON alike."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api import Api, GrpcApi, HttpApi
from tests.game import Player, join
from tests.stack import Stack

pytestmark = pytest.mark.usefixtures("stack")


def a_quiz(limit_ms: int = 600_000, **options: Any) -> dict[str, Any]:
    return {
        "title": "Reveal",
        "questions": [
            {"text": "q", "choices": ["a", "b"], "correct_choice": 1, "time_limit_ms": limit_ms},
            {"text": "r", "choices": ["a", "b"], "correct_choice": 0, "time_limit_ms": limit_ms},
        ],
        **options,
    }


@pytest.fixture(params=["grpc", "http"])
def api(request: pytest.FixtureRequest, stack: Stack) -> Api:
    if request.param == "http":
        return HttpApi(request.getfixturevalue("http"))
    return GrpcApi(stack.channels)


async def submit(api: Api, p: Player, quiz_id: str, question: int, choice: int) -> Any:
    return await api.call(
        "SubmitAnswer",
        {"quiz_id": quiz_id, "question_index": question, "choice_index": choice},
        p.token,
    )


def told(result: dict[str, Any]) -> tuple[bool, bool, int]:
    """(revealed, correct, points_awarded) of an AnswerResult, false and 0 when absent."""
    return (
        bool(result.get("revealed")),
        bool(result.get("correct")),
        int(result.get("points_awarded", 0)),
    )


async def standings(api: Api, quiz_id: str, token: str) -> list[tuple[str, int]]:
    board = await api.call("GetLeaderboard", {"quiz_id": quiz_id, "page_size": 10}, token)
    return [(e["nickname"], int(e.get("score", 0))) for e in board["entries"]]


async def own_score(api: Api, p: Player, quiz_id: str) -> tuple[int, list[tuple[bool, bool, int]]]:
    found = await api.call(
        "GetPlayerScore", {"quiz_id": quiz_id, "player_id": p.player_id}, p.token
    )
    return int(found.get("score", 0)), [told(a) for a in found.get("answers", [])]


async def a_game(api: Api, stack: Stack, quiz: dict[str, Any]) -> tuple[str, str, Player, Player]:
    host = stack.host_token("alice")
    created = (await api.call("CreateQuiz", quiz, host))["quiz"]
    pia, sam = (
        await join(api, created["quiz_id"], "pia"),
        await join(api, created["quiz_id"], "sam"),
    )
    await api.call("StartQuiz", {"quiz_id": created["quiz_id"]}, host)
    return created["quiz_id"], host, pia, sam


async def test_while_a_question_is_open_nobody_learns_who_got_it_right(
    api: Api, stack: Stack
) -> None:
    quiz_id, host, pia, sam = await a_game(api, stack, a_quiz())

    right = await submit(api, pia, quiz_id, 0, 1)
    wrong = await submit(api, sam, quiz_id, 0, 0)
    retried = await submit(api, pia, quiz_id, 0, 1)

    for reply, choice in ((right, 1), (wrong, 0), (retried, 1)):
        assert reply["result"]["choice_index"] == choice  # "answer received", and which
        assert told(reply["result"]) == (False, False, 0)
        assert int(reply.get("total_score", 0)) == 0
    assert await own_score(api, pia, quiz_id) == (0, [(False, False, 0)])
    # The big screen (the host's board) and each player's own rank stay still.
    assert sorted(await standings(api, quiz_id, host)) == [("pia", 0), ("sam", 0)]
    rank = await api.call(
        "GetPlayerRank", {"quiz_id": quiz_id, "player_id": pia.player_id}, pia.token
    )
    assert int(rank["player"].get("score", 0)) == 0
    quiz = (await api.call("GetQuiz", {"quiz_id": quiz_id}, host))["quiz"]
    assert quiz.get("instant_feedback", False) is False

    await api.call("AdvanceQuestion", {"quiz_id": quiz_id}, host)  # the host ends it

    score, results = await own_score(api, pia, quiz_id)
    assert results[0][:2] == (True, True)
    assert results[0][2] > 0
    assert score == results[0][2]
    assert await standings(api, quiz_id, host) == [("pia", score), ("sam", 0)]
    assert told((await submit(api, sam, quiz_id, 0, 0))["result"]) == (True, False, 0)
    replay = await submit(api, pia, quiz_id, 0, 1)
    assert told(replay["result"]) == (True, True, score)
    assert int(replay["total_score"]) == score


async def test_the_deadline_moves_the_board_before_watchers_hear_the_question_closed(
    api: Api, stack: Stack
) -> None:
    quiz_id, host, pia, _ = await a_game(api, stack, a_quiz(limit_ms=1_000))
    await submit(api, pia, quiz_id, 0, 1)

    async for message in api.watch("WatchQuiz", {"quiz_id": quiz_id}, host):
        if "question_closed" in message.get("event", {}):
            break
    board = await standings(api, quiz_id, host)

    assert board[0][0] == "pia"
    assert board[0][1] > 0
    score, results = await own_score(api, pia, quiz_id)
    assert (score, results) == (board[0][1], [(True, True, board[0][1])])


async def test_closing_the_quiz_reveals_the_open_question(api: Api, stack: Stack) -> None:
    quiz_id, host, _pia, sam = await a_game(api, stack, a_quiz())
    await submit(api, sam, quiz_id, 0, 1)

    await api.call("CloseQuiz", {"quiz_id": quiz_id}, host)

    board = await standings(api, quiz_id, host)
    assert board[0][0] == "sam"
    assert board[0][1] > 0
    assert board[1] == ("pia", 0)


async def test_a_practice_quiz_tells_at_once_and_moves_the_board(api: Api, stack: Stack) -> None:
    quiz_id, host, pia, _ = await a_game(api, stack, a_quiz(instant_feedback=True))

    reply = await submit(api, pia, quiz_id, 0, 1)

    revealed, correct, points = told(reply["result"])
    assert (revealed, correct) == (True, True)
    assert points > 0
    assert int(reply["total_score"]) == points
    assert await standings(api, quiz_id, host) == [("pia", points), ("sam", 0)]
    quiz = (await api.call("GetQuiz", {"quiz_id": quiz_id}, host))["quiz"]
    assert quiz["instant_feedback"] is True
