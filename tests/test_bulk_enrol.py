"""Bulk enrolment (`QuizStore.enrol_players`, `quizctl enrol`) writes exactly what
JoinQuiz writes: enrolled players are indistinguishable from joined ones through
GetLeaderboard, GetPlayerRank and GetQuiz, and in SQL and Redis; a batch that
cannot be written leaves nothing behind."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from quizctl import cli as quizctl
from services.database.engine import create_engine
from services.database.tables import players, quizzes
from services.live.keys import QuizKeys
from services.live.layout import pack
from services.live.quizzes import LiveQuizzes
from services.mesh.errors import FailedPrecondition
from services.quiz.joining import Joining
from services.quiz.store import DuplicateKey, QuizStore
from tests.api import GrpcApi
from tests.game import join
from tests.stack import Stack

QUIZ = {
    "title": "Bulk",
    "questions": [
        {"text": "q0", "choices": ["a", "b"], "correct_choice": 1, "time_limit_ms": 60_000}
    ],
}


@pytest.fixture(scope="module")
async def engine(stack: Stack) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(stack.backends.database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def new_quiz(stack: Stack) -> str:
    created = await GrpcApi(stack.channels).call("CreateQuiz", QUIZ, stack.host_token("alice"))
    return str(created["quiz"]["quiz_id"])


async def enrol(
    stack: Stack, engine: AsyncEngine, redis: Redis, quiz_id: str, names: list[str], batch: int
) -> list[str]:
    joining = Joining(QuizStore(engine), LiveQuizzes(redis, stack.key_prefix))
    return await joining.enrol(quiz_id, names, batch_size=batch)


async def player_rows(engine: AsyncEngine, quiz_id: str) -> list[Any]:
    async with engine.connect() as conn:
        return list(
            await conn.execute(
                select(players.c.id, players.c.nickname, players.c.joined_ms).where(
                    players.c.quiz_id == quiz_id
                )
            )
        )


async def test_enrolled_players_rank_and_count_exactly_like_joined_ones(
    stack: Stack, engine: AsyncEngine, redis_client: Redis
) -> None:
    api = GrpcApi(stack.channels)
    quiz_id = await new_quiz(stack)
    keys = QuizKeys(stack.key_prefix, quiz_id)
    joined = [(await join(api, quiz_id, f"joined{i}")).player_id for i in range(2)]
    version = int(await redis_client.hget(keys.state, "version") or 0)

    # Two batches; nicknames are normalised as JoinQuiz does (" bulk3 " -> "bulk3") and
    # stored as given, quotes, backslashes and all.
    names = ["bulk0", "O'Neil \\ 100% ünï", "bulk2", " bulk3 "]
    enrolled = await enrol(stack, engine, redis_client, quiz_id, names, batch=3)
    joined.append((await join(api, quiz_id, "joined2")).player_id)

    assert len(enrolled) == 4
    quiz = await api.call("GetQuiz", {"quiz_id": quiz_id})
    assert quiz["quiz"]["player_count"] == 7

    # SQL rows, and the Redis entries a join makes: 0 points at the join time, the
    # nickname, one version step per player.
    rows = await player_rows(engine, quiz_id)
    async with engine.connect() as conn:
        created_ms = await conn.scalar(select(quizzes.c.created_ms).where(quizzes.c.id == quiz_id))
    assert {r.id for r in rows} == set(joined + enrolled)
    assert {r.id: r.nickname for r in rows if r.id in enrolled} == dict(
        zip(enrolled, ["bulk0", "O'Neil \\ 100% ünï", "bulk2", "bulk3"], strict=True)
    )
    board = dict(
        cast(
            list[tuple[str, float]],
            await redis_client.zrange(keys.board, 0, -1, withscores=True),
        )
    )
    assert board == {r.id: pack(0, r.joined_ms - created_ms) for r in rows}
    assert await redis_client.hgetall(keys.nicknames) == {r.id: r.nickname for r in rows}
    assert int(await redis_client.hget(keys.state, "version") or 0) == version + 5

    # Everyone at 0 points, ranked by joining time (the same millisecond: greater id first).
    ranked = sorted(sorted(rows, key=lambda r: r.id, reverse=True), key=lambda r: r.joined_ms)
    page = await api.call("GetLeaderboard", {"quiz_id": quiz_id, "page_size": 10})
    expected = [
        {"rank": i + 1, "player_id": r.id, "nickname": r.nickname, "score": 0}
        for i, r in enumerate(ranked)
    ]
    assert page["entries"] == expected
    assert page["total_players"] == 7
    assert [r.id for r in ranked].index(joined[2]) == 6  # joined after every enrolled player

    for pid in (enrolled[1], joined[0]):
        rank = await api.call(
            "GetPlayerRank", {"quiz_id": quiz_id, "player_id": pid, "neighbours": 2}
        )
        mine = next(i for i, e in enumerate(expected) if e["player_id"] == pid)
        assert rank["player"] == expected[mine]
        assert rank["above"] == expected[max(0, mine - 2) : mine]
        assert rank["below"] == expected[mine + 1 : mine + 3]
        assert rank["total_players"] == 7
    # Neighbours exactly as asked: 0, or none sent, is the player alone.
    for asked in ({"neighbours": 0}, {}):
        alone = await api.call(
            "GetPlayerRank", {"quiz_id": quiz_id, "player_id": joined[0], **asked}
        )
        assert (alone["above"], alone["below"]) == ([], []), asked


async def test_a_taken_nickname_fails_its_batch_and_leaves_nothing_of_it(
    stack: Stack, engine: AsyncEngine, redis_client: Redis
) -> None:
    api = GrpcApi(stack.channels)
    quiz_id = await new_quiz(stack)
    await join(api, quiz_id, "taken")
    keys = QuizKeys(stack.key_prefix, quiz_id)

    with pytest.raises(DuplicateKey):
        await enrol(stack, engine, redis_client, quiz_id, ["free0", "taken", "free1"], batch=10)

    assert [r.nickname for r in await player_rows(engine, quiz_id)] == ["taken"]
    assert await redis_client.zcard(keys.board) == 1
    assert list((await redis_client.hgetall(keys.nicknames)).values()) == ["taken"]


async def test_a_started_quiz_takes_no_bulk_enrolment(
    stack: Stack, engine: AsyncEngine, redis_client: Redis
) -> None:
    quiz_id = await new_quiz(stack)
    await GrpcApi(stack.channels).call("StartQuiz", {"quiz_id": quiz_id}, stack.host_token("alice"))

    with pytest.raises(FailedPrecondition):
        await enrol(stack, engine, redis_client, quiz_id, ["late"], batch=10)
    assert await player_rows(engine, quiz_id) == []


async def test_quizctl_enrol_adds_players_the_quiz_counts(
    stack: Stack,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    quiz_id = await new_quiz(stack)
    for name, value in stack.common().items():
        monkeypatch.setenv(f"QUIZMESH_{name.upper()}", str(value))
    ids_file = tmp_path / "ids.txt"

    status = await quizctl.run(
        ["enrol", quiz_id.lower(), "--count", "25", "--batch", "10", "--ids", str(ids_file)]
    )

    assert status == 0
    assert f"quiz {quiz_id}: enrolled 25 players" in capsys.readouterr().out
    quiz = await GrpcApi(stack.channels).call("GetQuiz", {"quiz_id": quiz_id})
    assert quiz["quiz"]["player_count"] == 25
    ids = ids_file.read_text().split()
    assert len(ids) == 25
    rank = await GrpcApi(stack.channels).call(
        "GetPlayerRank", {"quiz_id": quiz_id, "player_id": ids[0], "neighbours": 1}
    )
    assert rank["player"]["nickname"] == "player0"

    again = await quizctl.run(["enrol", quiz_id, "--count", "3", "--first", "24"])
    assert again == 2  # player24 is taken
    assert "already taken" in capsys.readouterr().err
