"""A whole game, end to end, over native gRPC and over HTTP/JSON through Envoy.

Both tests play the reference game (tests.game.REFERENCE_QUIZ), specified step by
step in `the_reference_game`; each step below it checks one thing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx

from tests.api import Api, GrpcApi, HttpApi
from tests.game import REFERENCE_QUIZ, Player, answer, expected_points, join, ms, refused
from tests.stack import Stack

Watcher = AsyncGenerator[dict[str, Any], None]


async def test_a_whole_game_over_native_grpc(stack: Stack) -> None:
    await the_reference_game(GrpcApi(stack.channels), stack.host_token("alice"))


async def test_a_whole_game_over_http_json_through_envoy(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    # The leaderboard watch arrives as Server-Sent Events.
    await the_reference_game(HttpApi(http), stack.host_token("alice"))


async def the_reference_game(api: Api, host_token: str) -> None:
    """create -> 3 join -> start -> right, wrong, late, duplicate answers -> exact
    scores and ranks (with a tie broken by time) -> a watcher sees it -> close."""
    quiz = await the_host_creates_the_quiz(api, host_token)
    ann, bob, cat = [await join(api, quiz.quiz_id, name) for name in ("ann", "bob", "cat")]
    await a_taken_nickname_is_refused(quiz, "ann")
    await before_the_start_the_quiz_shows_its_players_but_no_question(quiz, players=3)
    watcher = await a_player_watches_the_leaderboard(quiz, ann, players=3)
    await an_answer_before_the_start_is_refused(quiz, ann)
    await the_host_starts_the_quiz(quiz)

    # Question 1 (index 0, 1 point over 10 minutes): ann right first, bob wrong,
    # cat right second.
    await a_right_answer_earns(quiz, ann, question=0, choice=1, points=1)
    bob_wrong = await a_wrong_answer_earns_nothing(quiz, bob, question=0, choice=2)
    await a_right_answer_adds_to_the_total(quiz, cat, question=0, choice=1, total=1)
    await players_see_the_open_question_but_not_its_answer(quiz, bob)
    # A tie: ann reached 1 point first, so she ranks above cat.
    await the_leaderboard_is(quiz, [("ann", 1, 1), ("cat", 1, 2), ("bob", 0, 3)])

    # The host ends question 1 before its deadline: it is revealed; the next step
    # opens question 2.
    await the_host_ends_the_open_question(quiz, question=0)
    await everyone_sees_the_answer_of_a_closed_question(quiz, bob, question=0, correct=1)

    # Question 2 (index 1, 1000 points over 4 s): ann and cat right, cat retries and
    # then changes her mind, bob answers too late.
    advanced = await the_host_advances_to(quiz, question=1)
    await a_retry_after_the_question_closed_gets_the_original(
        quiz, bob, question=0, choice=2, original=bob_wrong
    )
    opened = advanced["questions"][1]["opened_at"]
    ann_right = await a_right_answer_earns_points_for_speed(quiz, ann, 1, 0, opened)
    cat_right = await a_right_answer_earns_points_for_speed(quiz, cat, 1, 0, opened)
    await a_retry_gets_the_original_result_and_total(
        quiz, cat, question=1, choice=0, original=cat_right
    )
    await changing_an_answer_is_refused(quiz, cat, question=1, choice=1)
    await an_answer_after_the_deadline_is_refused(quiz, bob, advanced, question=1, choice=0)

    # The scores: 1 from question 1 plus what question 2 earned; stable sort, since
    # ann reached equal scores first.
    ann_total = 1 + ann_right["result"]["points_awarded"]
    cat_total = 1 + cat_right["result"]["points_awarded"]
    expected = sorted([("ann", ann_total), ("cat", cat_total), ("bob", 0)], key=lambda e: -e[1])
    ann_rank = 1 + [name for name, _ in expected].index("ann")
    await the_leaderboard_pages_rank(quiz, expected, page_size=2)
    await a_players_rank_shows_who_is_above(
        quiz, bob, rank=3, score=0, above=[name for name, _ in expected[:2]]
    )
    await a_player_sees_their_own_score_and_answers(quiz, ann, score=ann_total, questions=[0, 1])
    await the_watcher_sees_the_final_scores(watcher, expected, score=ann_total, rank=ann_rank)

    await the_host_closes_the_quiz(quiz)
    await an_answer_after_the_close_is_refused(quiz, bob, question=1, choice=0)
    await the_leaderboard_is_final(quiz)
    await watcher.aclose()


@dataclass
class Quiz:
    """The quiz being played, as its host and its players' clients reach it."""

    api: Api
    host_token: str
    quiz_id: str

    async def call(self, rpc: str, token: str | None = None, **fields: Any) -> Any:
        return await self.api.call(rpc, {"quiz_id": self.quiz_id, **fields}, token)

    async def answer(self, player: Player, question: int, choice: int) -> Any:
        return await answer(self.api, player, self.quiz_id, question, choice)


# --- the host ----------------------------------------------------------------------------


async def the_host_creates_the_quiz(api: Api, host_token: str) -> Quiz:
    """The new quiz is open, and its host sees every question's answer."""
    quiz = (await api.call("CreateQuiz", REFERENCE_QUIZ, host_token))["quiz"]
    assert quiz["state"] == "QUIZ_STATE_OPEN"
    assert [q["correct_choice"] for q in quiz["questions"]] == [1, 0, 1]
    return Quiz(api, host_token, quiz["quiz_id"])


async def the_host_starts_the_quiz(quiz: Quiz) -> None:
    started = (await quiz.call("StartQuiz", quiz.host_token))["quiz"]
    assert started["state"] == "QUIZ_STATE_RUNNING"
    assert started["current_question"] == 0


async def the_host_ends_the_open_question(quiz: Quiz, question: int) -> None:
    """AdvanceQuestion before the deadline: the question closes now, revealed, and
    stays the current one (watchers get its question_closed)."""
    ended = (await quiz.call("AdvanceQuestion", quiz.host_token))["quiz"]
    assert ended["current_question"] == question
    assert (
        ended["questions"][question]["correct_choice"]
        == REFERENCE_QUIZ["questions"][question]["correct_choice"]
    )


async def the_host_advances_to(quiz: Quiz, question: int) -> dict[str, Any]:
    """Returns the quiz as the host sees it once `question` is open."""
    advanced = (await quiz.call("AdvanceQuestion", quiz.host_token))["quiz"]
    assert advanced["current_question"] == question
    return dict(advanced)


async def the_host_closes_the_quiz(quiz: Quiz) -> None:
    closed = (await quiz.call("CloseQuiz", quiz.host_token))["quiz"]
    assert closed["state"] == "QUIZ_STATE_CLOSED"


# --- joining and seeing the quiz ---------------------------------------------------------


async def a_taken_nickname_is_refused(quiz: Quiz, nickname: str) -> None:
    taken = await refused(quiz.call("JoinQuiz", nickname=nickname))
    assert taken.code == grpc.StatusCode.ALREADY_EXISTS


async def before_the_start_the_quiz_shows_its_players_but_no_question(
    quiz: Quiz, players: int
) -> None:
    public = (await quiz.call("GetQuiz"))["quiz"]
    assert public["player_count"] == players
    assert public["questions"] == []


async def players_see_the_open_question_but_not_its_answer(quiz: Quiz, player: Player) -> None:
    seen = (await quiz.call("GetQuiz", player.token))["quiz"]
    assert len(seen["questions"]) == 1
    assert "correct_choice" not in seen["questions"][0]


async def everyone_sees_the_answer_of_a_closed_question(
    quiz: Quiz, player: Player, question: int, correct: int
) -> None:
    seen = (await quiz.call("GetQuiz", player.token))["quiz"]
    assert seen["questions"][question]["correct_choice"] == correct


# --- answering ---------------------------------------------------------------------------


async def an_answer_before_the_start_is_refused(quiz: Quiz, player: Player) -> None:
    early = await refused(quiz.answer(player, 0, 1))
    assert early.code == grpc.StatusCode.FAILED_PRECONDITION


async def a_right_answer_earns(
    quiz: Quiz, player: Player, question: int, choice: int, points: int
) -> Any:
    reply = await quiz.answer(player, question, choice)
    assert reply["result"]["correct"] is True
    assert reply["result"]["points_awarded"] == points
    return reply


async def a_wrong_answer_earns_nothing(
    quiz: Quiz, player: Player, question: int, choice: int
) -> Any:
    """Not correct, no points, and (a first answer) a total of 0."""
    reply = await quiz.answer(player, question, choice)
    result = reply["result"]
    assert (result["correct"], result["points_awarded"], reply["total_score"]) == (False, 0, 0)
    return reply


async def a_right_answer_adds_to_the_total(
    quiz: Quiz, player: Player, question: int, choice: int, total: int
) -> None:
    reply = await quiz.answer(player, question, choice)
    assert reply["total_score"] == total


async def a_right_answer_earns_points_for_speed(
    quiz: Quiz, player: Player, question: int, choice: int, opened: str
) -> Any:
    """The points of docs/spec.md#scoring for the time taken since the question
    `opened`, by the points and time limit REFERENCE_QUIZ gave it: at least half."""
    spec = REFERENCE_QUIZ["questions"][question]
    reply = await quiz.answer(player, question, choice)
    points = reply["result"]["points_awarded"]
    assert points == expected_points(
        spec["points"], spec["time_limit_ms"], opened, reply["result"]["answered_at"]
    )
    assert spec["points"] // 2 <= points <= spec["points"]
    return reply


async def a_retry_after_the_question_closed_gets_the_original(
    quiz: Quiz, player: Player, question: int, choice: int, original: Any
) -> None:
    again = await quiz.answer(player, question, choice)
    assert (again["replayed"], again["result"]) == (True, original["result"])


async def a_retry_gets_the_original_result_and_total(
    quiz: Quiz, player: Player, question: int, choice: int, original: Any
) -> None:
    retry = await quiz.answer(player, question, choice)
    assert retry["replayed"] is True
    assert retry["result"] == original["result"]
    assert retry["total_score"] == original["total_score"]


async def changing_an_answer_is_refused(
    quiz: Quiz, player: Player, question: int, choice: int
) -> None:
    changed = await refused(quiz.answer(player, question, choice))
    assert changed.code == grpc.StatusCode.ALREADY_EXISTS


async def an_answer_after_the_deadline_is_refused(
    quiz: Quiz, player: Player, advanced: dict[str, Any], question: int, choice: int
) -> None:
    """Waits out the question's deadline by the server's clock (`advanced`: the quiz
    as the host saw it), then answers: refused as too late."""
    deadline = ms(advanced["questions"][question]["deadline"])
    await asyncio.sleep(max(0, deadline - ms(advanced["server_time"])) / 1000 + 0.3)
    late = await refused(quiz.answer(player, question, choice))
    assert late.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "too late" in late.message


async def an_answer_after_the_close_is_refused(
    quiz: Quiz, player: Player, question: int, choice: int
) -> None:
    after = await refused(quiz.answer(player, question, choice))
    assert after.code == grpc.StatusCode.FAILED_PRECONDITION


# --- the leaderboard and scores ----------------------------------------------------------


async def the_leaderboard_is(quiz: Quiz, rows: list[tuple[str, int, int]]) -> None:
    """(nickname, score, rank) rows, best first."""
    board = await quiz.call("GetLeaderboard")
    assert [(e["nickname"], e["score"], e["rank"]) for e in board["entries"]] == rows


async def the_leaderboard_pages_rank(
    quiz: Quiz, expected: list[tuple[str, int]], page_size: int
) -> None:
    """Page by page, the (nickname, score) rows come in `expected` order, ranked 1, 2,
    3..., and the last page says there is no next one. (Written for two pages.)"""
    first = await quiz.call("GetLeaderboard", page_size=page_size)
    second = await quiz.call(
        "GetLeaderboard", page_size=page_size, page_token=first["next_page_token"]
    )
    entries = first["entries"] + second["entries"]
    assert [(e["nickname"], e["score"]) for e in entries] == expected
    assert [e["rank"] for e in entries] == list(range(1, len(expected) + 1))
    assert second["next_page_token"] == ""


async def a_players_rank_shows_who_is_above(
    quiz: Quiz, player: Player, rank: int, score: int, above: list[str]
) -> None:
    """GetPlayerRank with two neighbours: the player's rank and score, the nicknames
    above, none below."""
    reply = await quiz.call("GetPlayerRank", player_id=player.player_id, neighbours=2)
    assert (reply["player"]["rank"], reply["player"]["score"]) == (rank, score)
    assert [e["nickname"] for e in reply["above"]] == above
    assert reply["below"] == []


async def a_player_sees_their_own_score_and_answers(
    quiz: Quiz, player: Player, score: int, questions: list[int]
) -> None:
    mine = await quiz.call("GetPlayerScore", player.token, player_id=player.player_id)
    assert mine["score"] == score
    assert [a["question_index"] for a in mine["answers"]] == questions


async def a_player_watches_the_leaderboard(quiz: Quiz, player: Player, players: int) -> Watcher:
    """The first update is a snapshot of every player, with the watcher's own place."""
    watcher = quiz.api.watch("WatchLeaderboard", {"quiz_id": quiz.quiz_id}, player.token)
    first = await anext(watcher)
    assert first["snapshot"]["total_players"] == players
    assert first["you"]["player_id"] == player.player_id
    return watcher


async def the_watcher_sees_the_final_scores(
    watcher: Watcher, expected: list[tuple[str, int]], score: int, rank: int
) -> None:
    """Within 10 s an update carries the (nickname, score) rows `expected`, and the
    watcher's own `score` and `rank`."""

    async def until_final_scores() -> dict[str, Any]:
        async for update in watcher:
            snap = update.get("snapshot") or {}
            got = [(e["nickname"], e["score"]) for e in snap.get("entries", [])]
            if got == expected:
                return update
        raise AssertionError("stream ended")

    update = await asyncio.wait_for(until_final_scores(), timeout=10)
    assert update["you"]["score"] == score
    assert update["you"]["rank"] == rank


async def the_leaderboard_is_final(quiz: Quiz) -> None:
    final = await quiz.call("GetLeaderboard")
    assert final["is_final"] is True
