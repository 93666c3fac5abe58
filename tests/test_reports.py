"""A game's report: every player's answers best first, every question hardest first,
as JSON and CSV (through Envoy too); the same report once the game is over and
Redis has forgotten it, read from the system of record; and a host's history."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from redis.asyncio import Redis

from devstack.gateway import EnvoyProcess
from quizctl import cli
from services.live.keys import QuizKeys
from services.sync.config import Settings as SyncSettings
from services.sync.job import run_sync
from tests.api import ApiError, GrpcApi
from tests.game import join
from tests.stack import Backends, Stack, running_stack

QUIZ = {
    "title": "Report card",
    "instant_feedback": True,
    "questions": [
        {"text": "Easy?", "choices": ["yes", "no"], "correct_choice": 0, "time_limit_ms": 600_000},
        {
            "text": "=HARD()",  # a spreadsheet must show it, not run it
            "choices": ["a", "b", "c"],
            "correct_choice": 2,
            "time_limit_ms": 600_000,
        },
    ],
}


@pytest.fixture(scope="module")
async def own_stack(own_backends: Backends) -> AsyncIterator[Stack]:
    async with running_stack(own_backends, recovery_settle_seconds=0.2) as stack:
        yield stack


async def played(stack: Stack) -> tuple[str, str, dict[str, str]]:
    """A closed game: ann right twice, bob right once, cy wrong once, dee silent."""
    api = GrpcApi(stack.channels)
    host = stack.host_token("teacher")
    quiz_id = (await api.call("CreateQuiz", QUIZ, host))["quiz"]["quiz_id"]
    people = {name: await join(api, quiz_id, name) for name in ("ann", "bob", "cy", "dee")}
    await api.call("StartQuiz", {"quiz_id": quiz_id}, host)

    async def answer(name: str, question: int, choice: int) -> None:
        await api.call(
            "SubmitAnswer",
            {"quiz_id": quiz_id, "question_index": question, "choice_index": choice},
            people[name].token,
        )

    await answer("ann", 0, 0)
    await answer("bob", 0, 0)
    await answer("cy", 0, 1)
    await api.call("AdvanceQuestion", {"quiz_id": quiz_id}, host)
    await api.call("AdvanceQuestion", {"quiz_id": quiz_id}, host)
    await answer("ann", 1, 2)
    await answer("bob", 1, 0)
    await api.call("CloseQuiz", {"quiz_id": quiz_id}, host)
    return quiz_id, host, {name: p.player_id for name, p in people.items()}


def essentials(report: dict[str, Any]) -> dict[str, Any]:
    return {
        "players": [
            (
                p["rank"],
                p["nickname"],
                p["score"],
                [(a["question_index"], a["choice_index"], a["correct"]) for a in p["answers"]],
            )
            for p in report["players"]
        ],
        "questions": [
            (q["index"], q["choice_counts"], q["answered"], q["answered_right"])
            for q in report["questions"]
        ],
    }


async def test_the_report_tells_each_player_and_question_and_outlives_redis(
    own_stack: Stack,
) -> None:
    quiz_id, host, ids = await played(own_stack)
    api = GrpcApi(own_stack.channels)

    live = (await api.call("GetQuizReport", {"quiz_id": quiz_id}, host))["report"]

    summary = essentials(live)
    scores = [p[2] for p in summary["players"]]
    assert summary["players"] == [
        (1, "ann", scores[0], [(0, 0, True), (1, 2, True)]),
        (2, "bob", scores[1], [(0, 0, True), (1, 0, False)]),
        (3, "cy", 0, [(0, 1, False)]),  # 0 points: who joined first ranks first
        (4, "dee", 0, []),
    ]
    assert scores[0] > scores[1] > 0
    # The hardest first: question 2 (1 of 2 right) before question 1 (2 of 3).
    assert summary["questions"] == [(1, [1, 0, 1], 2, 1), (0, [2, 1], 3, 2)]
    every_answer = [a for p in live["players"] for a in p["answers"]]
    assert all(a["time_taken_ms"] >= 0 for a in every_answer)
    assert live["questions"][0]["median_time_ms"] >= 0

    # The game is over: the sync job makes it final in SQL, and Redis forgets it.
    await run_sync(
        SyncSettings(**own_stack.common(), sync_final_grace_seconds=0, sync_closed_ttl_seconds=30)
    )
    redis = Redis.from_url(own_stack.backends.redis_url)
    try:
        await redis.delete(*QuizKeys(own_stack.key_prefix, quiz_id).all())
    finally:
        await redis.aclose()

    final = (await api.call("GetQuizReport", {"quiz_id": quiz_id}, host))["report"]

    assert final["is_final"] is True
    assert essentials(final) == essentials(live)
    assert [a["time_taken_ms"] for p in final["players"] for a in p["answers"]] == [
        a["time_taken_ms"] for a in every_answer
    ]
    assert ids["ann"] == final["players"][0]["player_id"]


async def test_only_the_host_reads_the_report(own_stack: Stack) -> None:
    quiz_id, _, _ = await played(own_stack)
    api = GrpcApi(own_stack.channels)

    with pytest.raises(ApiError) as other:
        await api.call("GetQuizReport", {"quiz_id": quiz_id}, own_stack.host_token("someone"))

    assert other.value.code == grpc.StatusCode.PERMISSION_DENIED


async def test_a_host_lists_their_own_games(own_stack: Stack) -> None:
    api = GrpcApi(own_stack.channels)
    mine = [(await played(own_stack))[0] for _ in range(2)]
    await api.call("CreateQuiz", QUIZ, own_stack.host_token("another-teacher"))

    listed = await api.call(
        "ListQuizzes", {"mine": True, "page_size": 100}, own_stack.host_token("teacher")
    )
    with pytest.raises(ApiError) as anonymous:
        await api.call("ListQuizzes", {"mine": True})

    hosts = {q["host"] for q in listed["quizzes"]}
    assert hosts == {"teacher"}
    assert set(mine) <= {q["quiz_id"] for q in listed["quizzes"]}
    assert anonymous.value.code == grpc.StatusCode.UNAUTHENTICATED


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


async def test_the_csv_report_through_envoy_is_the_report_in_rows(
    stack: Stack, gateway: EnvoyProcess
) -> None:
    quiz_id, host, _ = await played(stack)
    report = (await GrpcApi(stack.channels).call("GetQuizReport", {"quiz_id": quiz_id}, host))[
        "report"
    ]

    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        response = await client.get(
            f"/v1/quizzes/{quiz_id}/report:csv", headers={"authorization": f"Bearer {host}"}
        )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = rows_of(response.text)
    assert len(rows) == 4 * 2  # every player, every question that opened
    first = rows[0]
    assert (first["rank"], first["nickname"], first["question"], first["correct"]) == (
        "1",
        "ann",
        "1",
        "yes",
    )
    assert int(first["score"]) == report["players"][0]["score"]
    hard = [r for r in rows if r["question"] == "2"]
    assert {r["question_text"] for r in hard} == {"'=HARD()"}  # text, not a formula
    dee = [r for r in rows if r["nickname"] == "dee"]
    assert all(r["choice"] == "" for r in dee)


async def test_quizctl_prints_and_saves_the_report(
    stack: Stack,
    gateway: EnvoyProcess,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    quiz_id, host, _ = await played(stack)
    environ = {"QUIZMESH_TARGET": f"127.0.0.1:{gateway.port}", "QUIZMESH_TOKEN": host}
    saved = tmp_path / "report.csv"

    assert await cli.run(["report", quiz_id], environ) == 0
    printed = capsys.readouterr().out
    assert await cli.run(["report", quiz_id, "--csv", "-o", str(saved)], environ) == 0

    assert "questions, hardest first:" in printed
    assert printed.index("=HARD()") < printed.index("Easy?")
    assert "1/2 right" in printed
    assert [r["nickname"] for r in rows_of(read(saved))][::2] == ["ann", "bob", "cy", "dee"]


def read(path: Path) -> str:
    return path.read_text()
