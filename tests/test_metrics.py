"""Every service exposes Prometheus metrics; a game leaves exactly its counts."""

from __future__ import annotations

import asyncio

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.api import GrpcApi
from tests.game import answer, join, refused
from tests.stack import Stack

QUIZ = {
    "title": "Metrics",
    # Each answer moves the board at once, for the answer-to-watchers latency.
    "instant_feedback": True,
    "questions": [{"text": "1+1?", "choices": ["1", "2"], "correct_choice": 1}] * 2,
}


async def scrape(stack: Stack, service: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with httpx.AsyncClient() as client:
        text = (await client.get(stack.metrics_url(service))).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_a_game_leaves_its_counts_in_every_services_metrics(stack: Stack) -> None:
    api = GrpcApi(stack.channels)
    host = stack.host_token("alice")
    before = {name: await scrape(stack, name) for name in stack.apps}

    quiz_id = (await api.call("CreateQuiz", QUIZ, host))["quiz"]["quiz_id"]
    people = [await join(api, quiz_id, f"m{i}") for i in range(3)]
    watcher = api.watch("WatchLeaderboard", {"quiz_id": quiz_id})
    await anext(watcher)
    await api.call("StartQuiz", {"quiz_id": quiz_id}, host)
    for p in people:
        await answer(api, p, quiz_id, 0, 1)
    await answer(api, people[0], quiz_id, 0, 1)  # a retry
    await refused(answer(api, people[0], quiz_id, 1, 1))  # not open yet
    await asyncio.sleep(0.5)  # a coalesced snapshot reaches the watcher

    score = await scrape(stack, "score")
    for outcome, expected in (("accepted", 3), ("replayed", 1), ("not_open", 1)):
        got = value(score, "quizmesh_answers_total", outcome=outcome)
        assert got - value(before["score"], "quizmesh_answers_total", outcome=outcome) == expected
    ok = value(score, "quizmesh_rpc_requests_total", method="SubmitAnswer", code="OK")
    assert (
        ok - value(before["score"], "quizmesh_rpc_requests_total", method="SubmitAnswer", code="OK")
        == 4
    )
    failed = value(
        score, "quizmesh_rpc_requests_total", method="SubmitAnswer", code="FAILED_PRECONDITION"
    )
    assert (
        failed
        - value(
            before["score"],
            "quizmesh_rpc_requests_total",
            method="SubmitAnswer",
            code="FAILED_PRECONDITION",
        )
        == 1
    )

    quiz = await scrape(stack, "quiz")
    joins = value(quiz, "quizmesh_rpc_requests_total", method="JoinQuiz", code="OK")
    assert (
        joins - value(before["quiz"], "quizmesh_rpc_requests_total", method="JoinQuiz", code="OK")
        == 3
    )
    assert value(quiz, "quizmesh_rpc_duration_seconds_count", method="JoinQuiz") >= 3

    stream = await scrape(stack, "stream")
    assert value(stream, "quizmesh_active_streams", rpc="WatchLeaderboard") >= 1
    latency = value(stream, "quizmesh_answer_to_watchers_seconds_count")
    assert latency > value(before["stream"], "quizmesh_answer_to_watchers_seconds_count")
    await watcher.aclose()
    for _ in range(20):  # the stream's end is counted once the server sees the cancel
        stream = await scrape(stack, "stream")
        if value(stream, "quizmesh_active_streams", rpc="WatchLeaderboard") == value(
            before["stream"], "quizmesh_active_streams", rpc="WatchLeaderboard"
        ):
            break
        await asyncio.sleep(0.1)
    assert value(stream, "quizmesh_active_streams", rpc="WatchLeaderboard") == value(
        before["stream"], "quizmesh_active_streams", rpc="WatchLeaderboard"
    )

    leaderboard = await scrape(stack, "leaderboard")
    pages = value(leaderboard, "quizmesh_rpc_requests_total", method="GetLeaderboard", code="OK")
    assert pages == value(
        before["leaderboard"], "quizmesh_rpc_requests_total", method="GetLeaderboard", code="OK"
    )  # this game read no page
