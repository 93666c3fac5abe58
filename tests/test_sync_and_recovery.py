"""The sync job copies exactly what was accepted into SQL, incrementally and
idempotently; a quiz's live state is rebuilt exactly from SQL plus JetStream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from quizmesh.common.v1 import events_pb2
from redis.asyncio import Redis
from sqlalchemy import func, select

from quizctl import cli as quizctl
from services.database.engine import create_engine
from services.database.tables import answers, quizzes, scores
from services.live.keys import QuizKeys
from services.live.layout import Field
from services.mesh.messaging import Subjects, ensure_streams
from services.sync.config import Settings as SyncSettings
from services.sync.job import run_sync
from tests.api import GrpcApi
from tests.game import Player, answer, join, next_question
from tests.retry import until_available
from tests.stack import Backends, Stack, running_stack

QUIZ = {
    "title": "Sync",
    "questions": [
        {
            "text": f"q{i}",
            "choices": ["a", "b", "c"],
            "correct_choice": i % 3,
            "time_limit_ms": 60_000,
        }
        for i in range(3)
    ],
}


@pytest.fixture(scope="module")
async def own_stack(own_backends: Backends) -> AsyncIterator[Stack]:
    # Its own prefixes, so the sync job sees only this module's answers.
    async with running_stack(own_backends, recovery_settle_seconds=0.2) as stack:
        yield stack


def sync_settings(stack: Stack, **overrides: Any) -> SyncSettings:
    return SyncSettings(**{**stack.common(), **overrides})


async def sql(backends: Backends, query: Any) -> list[Any]:
    engine = create_engine(backends.database_url)
    try:
        async with engine.connect() as conn:
            return list(await conn.execute(query))
    finally:
        await engine.dispose()


async def live_state(stack: Stack, quiz_id: str) -> dict[str, Any]:
    keys = QuizKeys(stack.key_prefix, quiz_id)
    redis = Redis.from_url(stack.backends.redis_url, decode_responses=True)
    try:
        state = await redis.hgetall(keys.state)
        state.pop("version", None)  # jumps on a rebuild, so watchers see it as new
        # A rebuilt board is a new generation: copies of it are read afresh.
        state.pop(Field.BOARD_GENERATION, None)
        state.pop(Field.BOARD_SEQUENCE, None)
        # When the board last moved: without instant feedback, when a question's
        # results were revealed, which no record keeps; the rebuild puts the last
        # revealed answer's time, at most the real one.
        if state.get(Field.INSTANT_FEEDBACK) == "0" and Field.CHANGED_AT in state:
            state[Field.CHANGED_AT] = "revealed"
        return {
            "state": state,
            "board": await redis.zrange(keys.board, 0, -1, withscores=True),
            "pending": await redis.zrange(keys.pending, 0, -1, withscores=True),
            "nicknames": await redis.hgetall(keys.nicknames),
            "answers": await redis.hgetall(keys.answers),
            "questions": await redis.hgetall(keys.questions),
        }
    finally:
        await redis.aclose()


async def played_quiz(stack: Stack, players: int = 4) -> tuple[str, list[Player]]:
    """A running quiz where everyone answered question 0 and some question 1."""
    api = GrpcApi(stack.channels)
    host = stack.host_token("alice")
    quiz_id = (await api.call("CreateQuiz", QUIZ, host))["quiz"]["quiz_id"]
    people = [await join(api, quiz_id, f"p{i}") for i in range(players)]
    await api.call("StartQuiz", {"quiz_id": quiz_id}, host)
    for i, p in enumerate(people):
        await answer(api, p, quiz_id, 0, i % 3)  # p0 and p3 right
    await next_question(api, quiz_id, host)
    for p in people[:2]:
        await answer(api, p, quiz_id, 1, 1)  # both right
    return quiz_id, people


async def test_a_sync_copies_every_accepted_answer_and_total_once(own_stack: Stack) -> None:
    quiz_id, _ = await played_quiz(own_stack)
    first = await run_sync(sync_settings(own_stack))
    assert first.answers == 6
    again = await run_sync(sync_settings(own_stack))
    assert again.answers == 0  # incremental: nothing new, nothing copied
    assert again.checkpoint == first.checkpoint

    rows = await sql(own_stack.backends, select(answers).where(answers.c.quiz_id == quiz_id))
    assert len(rows) == 6
    # The board shows question 1's points once it has closed; SQL counts every
    # durable answer at once.
    api = GrpcApi(own_stack.channels)
    await api.call("AdvanceQuestion", {"quiz_id": quiz_id}, own_stack.host_token("alice"))
    board = (
        await GrpcApi(own_stack.channels).call(
            "GetLeaderboard", {"quiz_id": quiz_id, "page_size": 10}
        )
    )["entries"]
    totals = {e["player_id"]: e["score"] for e in board if e["score"] > 0}
    stored = await sql(
        own_stack.backends,
        select(scores.c.player_id, scores.c.score).where(scores.c.quiz_id == quiz_id),
    )
    assert dict(stored) == totals  # players who never scored get a row only when final


async def test_a_total_in_sql_is_the_sum_of_the_durable_answers_not_the_carried_total(
    own_stack: Stack,
) -> None:
    # Records as the score service writes them after Redis had applied an answer
    # that never became durable: their running total counts its 700 points.
    quiz_id = f"S{int(time.time() * 1000) % 10**9:09d}"
    subjects = Subjects(own_stack.nats_prefix)
    nc = await nats.connect(own_stack.backends.nats_url)
    try:
        js = nc.jetstream()
        await ensure_streams(js, subjects, 1)
        for question, points, carried in [(0, 300, 1000), (2, 200, 1200)]:
            record = events_pb2.AcceptedAnswer(
                quiz_id=quiz_id,
                question_index=question,
                player_id="lia",
                choice_index=1,
                correct=True,
                points_awarded=points,
                total_score=carried,
                answered_at=Timestamp(seconds=1_700_000_000 + question),
            )
            await js.publish(
                subjects.answers(quiz_id),
                record.SerializeToString(),
                headers={"Nats-Msg-Id": f"{quiz_id}:{question}:lia"},
            )
    finally:
        await nc.close()

    await run_sync(sync_settings(own_stack))

    stored = await sql(
        own_stack.backends,
        select(scores.c.score, scores.c.reached_ms).where(scores.c.quiz_id == quiz_id),
    )
    assert [tuple(row) for row in stored] == [(500, 1_700_000_002_000)]


async def test_an_incremental_sync_copies_only_what_changed(own_stack: Stack) -> None:
    quiz_id, people = await played_quiz(own_stack)
    await run_sync(sync_settings(own_stack))
    await answer(GrpcApi(own_stack.channels), people[2], quiz_id, 1, 1)
    report = await run_sync(sync_settings(own_stack))
    assert report.answers == 1
    count = await sql(
        own_stack.backends,
        select(func.count()).select_from(answers).where(answers.c.quiz_id == quiz_id),
    )
    assert count[0][0] == 7


async def test_two_syncs_at_once_write_the_same_rows(own_stack: Stack) -> None:
    quiz_id, _ = await played_quiz(own_stack)
    await asyncio.gather(run_sync(sync_settings(own_stack)), run_sync(sync_settings(own_stack)))
    rows = await sql(own_stack.backends, select(answers).where(answers.c.quiz_id == quiz_id))
    assert len(rows) == 6


async def test_a_closed_quiz_becomes_final_with_every_player_ranked(own_stack: Stack) -> None:
    quiz_id, _ = await played_quiz(own_stack)
    api = GrpcApi(own_stack.channels)
    await api.call("CloseQuiz", {"quiz_id": quiz_id}, own_stack.host_token("alice"))
    live = await api.call("GetLeaderboard", {"quiz_id": quiz_id, "page_size": 10})

    report = await run_sync(
        sync_settings(own_stack, sync_final_grace_seconds=0, sync_closed_ttl_seconds=30)
    )
    assert report.quizzes_finalized >= 1
    final = await sql(
        own_stack.backends, select(quizzes.c.board_final).where(quizzes.c.id == quiz_id)
    )
    assert final[0][0] is True or final[0][0] == 1
    ranked = await sql(
        own_stack.backends,
        select(scores.c.player_id, scores.c.score)
        .where(scores.c.quiz_id == quiz_id)
        .order_by(scores.c.score.desc(), scores.c.reached_ms, scores.c.player_id.desc()),
    )
    assert [(pid, s) for pid, s in ranked] == [
        (e["player_id"], e["score"]) for e in live["entries"]
    ]
    redis = Redis.from_url(own_stack.backends.redis_url)
    try:
        ttl = await redis.ttl(QuizKeys(own_stack.key_prefix, quiz_id).board)
    finally:
        await redis.aclose()
    assert 0 < ttl <= 30  # Redis may now let the final board go


async def test_lost_live_state_is_rebuilt_exactly_from_sql_and_jetstream(
    own_stack: Stack,
) -> None:
    quiz_id, people = await played_quiz(own_stack)
    await run_sync(sync_settings(own_stack))  # part of it in SQL already ...
    await answer(GrpcApi(own_stack.channels), people[3], quiz_id, 1, 0)  # ... part not
    before = await live_state(own_stack, quiz_id)

    redis = Redis.from_url(own_stack.backends.redis_url)
    try:
        await redis.delete(*QuizKeys(own_stack.key_prefix, quiz_id).all())
    finally:
        await redis.aclose()

    for _ in range(75):  # the quiz service's restore loop notices within seconds
        after = await live_state(own_stack, quiz_id)
        if after["state"]:
            break
        await asyncio.sleep(0.2)
    assert after == before


async def test_a_redis_that_lost_every_quiz_gets_them_back_together(
    own_backends: Backends,
) -> None:
    """Each rebuild waits out the settle delay (answers still on their way to
    JetStream); the quizzes wait it out side by side, not one after another."""
    settle, quizzes_lost = 2.0, 4
    async with running_stack(own_backends, recovery_settle_seconds=settle) as stack:
        played = [await played_quiz(stack) for _ in range(quizzes_lost)]
        redis = Redis.from_url(stack.backends.redis_url)
        try:
            for quiz_id, _ in played:
                await redis.delete(*QuizKeys(stack.key_prefix, quiz_id).all())
        finally:
            await redis.aclose()
        lost_at = time.monotonic()

        pending = {quiz_id for quiz_id, _ in played}
        while pending and time.monotonic() - lost_at < quizzes_lost * settle:
            pending = {q for q in pending if not (await live_state(stack, q))["state"]}
            await asyncio.sleep(0.1)

        assert not pending  # one by one, the last would still wait for its turn


async def test_an_answer_to_a_lost_quiz_rebuilds_it_and_counts_once(own_stack: Stack) -> None:
    quiz_id, people = await played_quiz(own_stack)
    before = await live_state(own_stack, quiz_id)
    redis = Redis.from_url(own_stack.backends.redis_url)
    try:
        await redis.delete(*QuizKeys(own_stack.key_prefix, quiz_id).all())
    finally:
        await redis.aclose()
    api = GrpcApi(own_stack.channels)
    # A retry of an answer accepted before the loss gets its original result back,
    # once the rebuild it set off is done (meanwhile: UNAVAILABLE, retried).
    retry = await until_available(lambda: answer(api, people[0], quiz_id, 1, 1))
    assert retry["replayed"] is True
    after = await live_state(own_stack, quiz_id)
    assert after == before


async def test_quizctl_recover_rebuilds_a_damaged_live_state(
    own_stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    quiz_id, people = await played_quiz(own_stack)
    before = await live_state(own_stack, quiz_id)
    redis = Redis.from_url(own_stack.backends.redis_url)
    try:  # damage, not loss: a player and an answer are gone
        keys = QuizKeys(own_stack.key_prefix, quiz_id)
        await redis.zrem(keys.board, people[0].player_id)
        await redis.hdel(keys.answers, f"0:{people[1].player_id}")
    finally:
        await redis.aclose()
    for name, value in own_stack.common().items():
        monkeypatch.setenv(f"QUIZMESH_{name.upper()}", str(value))
    monkeypatch.setenv("QUIZMESH_RECOVERY_SETTLE_SECONDS", "0")

    assert await quizctl.run(["recover", quiz_id.lower()]) == 0
    assert f"quiz {quiz_id}: rebuilt 4 players, 6 answers" in capsys.readouterr().out
    assert await live_state(own_stack, quiz_id) == before
