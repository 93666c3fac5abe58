"""The reference game, written once and played over any Api (gRPC or HTTP/JSON)."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from tests.api import Api, ApiError


def ms(rfc3339: str) -> int:
    ts = Timestamp()
    ts.FromJsonString(rfc3339)
    return ts.ToMilliseconds()


def expected_points(points: int, limit_ms: int, opened: str, answered: str) -> int:
    """DESIGN.md: round(points * (1 - elapsed / (2 * time_limit))), halves rounded up."""
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


async def answer(api: Api, p: Player, quiz_id: str, question: int, choice: int) -> Any:
    return await api.call(
        "SubmitAnswer",
        {"quiz_id": quiz_id, "question_index": question, "choice_index": choice},
        p.token,
    )


async def play_reference_game(api: Api, host_token: str) -> None:
    """create -> 3 join -> start -> right, wrong, late, duplicate answers -> exact
    scores and ranks (with a tie broken by time) -> a watcher sees it -> close."""
    created = await api.call("CreateQuiz", REFERENCE_QUIZ, host_token)
    quiz = created["quiz"]
    quiz_id = quiz["quiz_id"]
    assert quiz["state"] == "QUIZ_STATE_OPEN"
    assert [q["correct_choice"] for q in quiz["questions"]] == [1, 0, 1]  # the host sees them

    ann = await join(api, quiz_id, "ann")
    bob = await join(api, quiz_id, "bob")
    cat = await join(api, quiz_id, "cat")
    taken = await refused(api.call("JoinQuiz", {"quiz_id": quiz_id, "nickname": "ann"}))
    assert taken.code == grpc.StatusCode.ALREADY_EXISTS

    public = (await api.call("GetQuiz", {"quiz_id": quiz_id}))["quiz"]
    assert public["player_count"] == 3
    assert public["questions"] == []  # nothing is shown before it opens

    watcher = api.watch("WatchLeaderboard", {"quiz_id": quiz_id}, ann.token)
    first = await anext(watcher)
    assert first["snapshot"]["total_players"] == 3
    assert first["you"]["player_id"] == ann.player_id

    early = await refused(answer(api, ann, quiz_id, 0, 1))
    assert early.code == grpc.StatusCode.FAILED_PRECONDITION

    started = (await api.call("StartQuiz", {"quiz_id": quiz_id}, host_token))["quiz"]
    assert started["state"] == "QUIZ_STATE_RUNNING"
    assert started["current_question"] == 0

    # Question 0: ann right first, cat right second, bob wrong.
    a0 = await answer(api, ann, quiz_id, 0, 1)
    assert a0["result"]["correct"] is True
    assert a0["result"]["points_awarded"] == 1
    b0 = await answer(api, bob, quiz_id, 0, 2)
    assert (b0["result"]["correct"], b0["result"]["points_awarded"], b0["total_score"]) == (
        False,
        0,
        0,
    )
    c0 = await answer(api, cat, quiz_id, 0, 1)
    assert c0["total_score"] == 1

    # Players see the open question, never its answer.
    seen = (await api.call("GetQuiz", {"quiz_id": quiz_id}, bob.token))["quiz"]
    assert len(seen["questions"]) == 1
    assert "correct_choice" not in seen["questions"][0]

    tie = await api.call("GetLeaderboard", {"quiz_id": quiz_id})
    assert [(e["nickname"], e["score"], e["rank"]) for e in tie["entries"]] == [
        ("ann", 1, 1),
        ("cat", 1, 2),
        ("bob", 0, 3),
    ]

    advanced = (await api.call("AdvanceQuestion", {"quiz_id": quiz_id}, host_token))["quiz"]
    q1 = advanced["questions"][1]
    assert advanced["current_question"] == 1
    # Question 0 is now closed: everyone may see its answer.
    seen = (await api.call("GetQuiz", {"quiz_id": quiz_id}, bob.token))["quiz"]
    assert seen["questions"][0]["correct_choice"] == 1

    # A retry after the question closed still gets the original result.
    again = await answer(api, bob, quiz_id, 0, 2)
    assert (again["replayed"], again["result"]) == (True, b0["result"])

    # Question 1: ann right; cat right then retries (same result) and changes her mind.
    a1 = await answer(api, ann, quiz_id, 1, 0)
    c1 = await answer(api, cat, quiz_id, 1, 0)
    for reply in (a1, c1):
        assert reply["result"]["points_awarded"] == expected_points(
            1000, 4_000, q1["opened_at"], reply["result"]["answered_at"]
        )
        assert 500 <= reply["result"]["points_awarded"] <= 1000
    retry = await answer(api, cat, quiz_id, 1, 0)
    assert retry["replayed"] is True
    assert retry["result"] == c1["result"]
    assert retry["total_score"] == c1["total_score"]
    changed = await refused(answer(api, cat, quiz_id, 1, 1))
    assert changed.code == grpc.StatusCode.ALREADY_EXISTS

    # bob answers after the deadline (server clock): refused, nothing counted.
    await asyncio.sleep(max(0, ms(q1["deadline"]) - ms(advanced["server_time"])) / 1000 + 0.3)
    late = await refused(answer(api, bob, quiz_id, 1, 0))
    assert late.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "too late" in late.message

    ann_total = 1 + a1["result"]["points_awarded"]
    cat_total = 1 + c1["result"]["points_awarded"]
    expected = sorted(
        [("ann", ann_total), ("cat", cat_total), ("bob", 0)],
        key=lambda e: -e[1],  # stable: ann reached equal scores first
    )
    board = await api.call("GetLeaderboard", {"quiz_id": quiz_id, "page_size": 2})
    page2 = await api.call(
        "GetLeaderboard",
        {"quiz_id": quiz_id, "page_size": 2, "page_token": board["next_page_token"]},
    )
    rows = [(e["nickname"], e["score"]) for e in board["entries"] + page2["entries"]]
    assert rows == expected
    assert [e["rank"] for e in board["entries"] + page2["entries"]] == [1, 2, 3]
    assert page2["next_page_token"] == ""

    rank = await api.call("GetPlayerRank", {"quiz_id": quiz_id, "player_id": bob.player_id})
    assert (rank["player"]["rank"], rank["player"]["score"]) == (3, 0)
    assert [e["nickname"] for e in rank["above"]] == [n for n, _ in expected[:2]]
    assert rank["below"] == []

    mine = await api.call(
        "GetPlayerScore", {"quiz_id": quiz_id, "player_id": ann.player_id}, ann.token
    )
    assert mine["score"] == ann_total
    assert [a["question_index"] for a in mine["answers"]] == [0, 1]

    # The watcher saw the final scores arrive, with ann's own place.
    async def until_final_scores() -> dict[str, Any]:
        async for update in watcher:
            snap = update.get("snapshot") or {}
            got = [(e["nickname"], e["score"]) for e in snap.get("entries", [])]
            if got == expected:
                return update
        raise AssertionError("stream ended")

    update = await asyncio.wait_for(until_final_scores(), timeout=10)
    assert update["you"]["score"] == ann_total
    assert update["you"]["rank"] == 1 + [n for n, _ in expected].index("ann")

    closed = (await api.call("CloseQuiz", {"quiz_id": quiz_id}, host_token))["quiz"]
    assert closed["state"] == "QUIZ_STATE_CLOSED"
    after = await refused(answer(api, bob, quiz_id, 1, 0))
    assert after.code == grpc.StatusCode.FAILED_PRECONDITION
    final = await api.call("GetLeaderboard", {"quiz_id": quiz_id})
    assert final["is_final"] is True
    await watcher.aclose()
