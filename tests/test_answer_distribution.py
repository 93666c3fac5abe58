"""After each question, how many chose each choice: in its question_closed event,
for the big screen and every phone, however the question ended (the host, or its
deadline), over gRPC and SSE through Envoy. A rebuilt live state keeps the counts
(tests/test_sync_and_recovery.py compares the whole state hash)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.api import Api, GrpcApi, HttpApi
from tests.game import join
from tests.stack import Stack

pytestmark = pytest.mark.usefixtures("stack")

QUIZ = {
    "title": "Distribution",
    "questions": [
        {"text": "q", "choices": ["a", "b", "c"], "correct_choice": 1, "time_limit_ms": 600_000},
        {"text": "r", "choices": ["a", "b"], "correct_choice": 0, "time_limit_ms": 1_500},
    ],
}


@pytest.fixture(params=["grpc", "http"])
def api(request: pytest.FixtureRequest, stack: Stack) -> Api:
    if request.param == "http":
        return HttpApi(request.getfixturevalue("http"))
    return GrpcApi(stack.channels)


async def closed_events(api: Api, quiz_id: str, count: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    async with asyncio.timeout(20):
        async for message in api.watch("WatchQuiz", {"quiz_id": quiz_id}):
            event = message.get("event") or {}
            if "question_closed" in event:
                found.append(event["question_closed"])
            if len(found) == count:
                return found
    return found


async def test_each_reveal_tells_how_many_chose_each_choice(api: Api, stack: Stack) -> None:
    host = stack.host_token("alice")
    quiz_id = str((await api.call("CreateQuiz", QUIZ, host))["quiz"]["quiz_id"])
    players = [await join(api, quiz_id, f"p{i}") for i in range(4)]
    await api.call("StartQuiz", {"quiz_id": quiz_id}, host)
    for player, choice in zip(players, (1, 1, 0), strict=False):  # p3 does not answer
        await api.call(
            "SubmitAnswer",
            {"quiz_id": quiz_id, "question_index": 0, "choice_index": choice},
            player.token,
        )
    await api.call("AdvanceQuestion", {"quiz_id": quiz_id}, host)  # the host ends it
    await api.call("AdvanceQuestion", {"quiz_id": quiz_id}, host)  # question 2, 1.5 s
    await api.call(
        "SubmitAnswer",
        {"quiz_id": quiz_id, "question_index": 1, "choice_index": 1},
        players[0].token,
    )

    first, second = await closed_events(api, quiz_id, 2)  # the second: at its deadline

    assert (first["index"], first["correct_choice"], first["choice_counts"]) == (0, 1, [1, 2, 0])
    assert (second["index"], second["choice_counts"]) == (1, [0, 1])
