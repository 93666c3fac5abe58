"""A stream process's copy of a board (services/stream/board_copy.py) against a real
Redis: read once, then kept level from the updates the leaderboard service takes
(LiveBoard.take_update), it ranks every player as Redis does; updates out of
order wait for the missing one, a gap that stays or a rebuilt board makes it read
the board afresh, and until it is level it answers nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from quizmesh.common.v1 import events_pb2
from redis.asyncio import Redis

from services.live.answers import AnswerBook
from services.live.board import LiveBoard
from services.live.pipeline import PipelinedRedis, RedisAddress
from services.live.quizzes import LiveQuizzes, RebuiltState
from services.stream import board_copy, standings
from services.stream.board_copy import BoardCopy
from services.stream.standings import Standings
from tests.stack import Backends, forget
from tests.test_live_layout import EPOCH, QUESTIONS, a_quiz


@pytest.fixture
async def live(backends: Backends) -> AsyncIterator[tuple[LiveQuizzes, AnswerBook, LiveBoard]]:
    tag = uuid.uuid4().hex[:10]
    prefix = f"t{tag}:"
    redis = Redis.from_url(backends.redis_url, decode_responses=True)
    pipe = PipelinedRedis(RedisAddress.parse(backends.redis_url))
    try:
        yield LiveQuizzes(redis, prefix), AnswerBook(redis, pipe, prefix), LiveBoard(pipe, prefix)
    finally:
        await pipe.close()
        await redis.aclose()
        await forget(backends, prefix, f"t{tag}")


async def a_running_quiz(live: LiveQuizzes, players: int) -> str:
    quiz_id = f"B{uuid.uuid4().hex[:8].upper()}"
    await live.publish(a_quiz(quiz_id, instant_feedback=True), QUESTIONS)
    # One join batch: every player at 0 points at the same time, a tie of all.
    await live.enrol(quiz_id, [(f"p{i}", f"N{i}") for i in range(players)], reached_ms=10)
    await live.open_question(quiz_id, 0, EPOCH + 60_000, EPOCH + 70_000)
    return quiz_id


async def redis_places(
    board: LiveBoard, quiz_id: str, ids: list[str]
) -> dict[str, tuple[int, int]]:
    return await board.places(quiz_id, ids, board_size=10**9)  # ZREVRANK each


async def soon(holds: Callable[[], bool]) -> None:
    """Waits up to 5 s for `holds()`, a state the copy reaches in the background."""
    for _ in range(500):
        if holds():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not reached within 5 s")


async def read(copy: BoardCopy) -> None:
    await soon(lambda: copy.generation is not None)


async def take(board: LiveBoard, quiz_id: str, most: int = 5_000) -> list[events_pb2.BoardUpdate]:
    """Every update the leaderboard service would publish now."""
    parts = []
    while True:
        update = await board.take_update(quiz_id, 10, most)
        assert update is not None
        parts.append(update)
        if update.complete:
            return parts


async def test_a_copy_kept_level_ranks_everyone_as_redis_does(
    live: tuple[LiveQuizzes, AnswerBook, LiveBoard],
) -> None:
    quizzes, book, board = live
    quiz_id = await a_running_quiz(quizzes, 300)
    await take(board, quiz_id)  # the joins' update, before this copy existed
    copy = BoardCopy(board, quiz_id)
    copy.start()
    await read(copy)
    ids = [f"p{i}" for i in range(300)]
    assert copy.places(ids) is None  # not level until an update after the read

    for i in range(0, 300, 3):  # a third right, in order: ties broken by time
        await book.submit(quiz_id, 0, f"p{i}", 1, EPOCH + 61_000 + i)
    await quizzes.remove(quiz_id, ["p7"])
    for update in await take(board, quiz_id, most=40):  # in parts of 40
        copy.on_update(update)

    assert copy.level
    assert copy.places(ids) == await redis_places(board, quiz_id, ids)
    assert "p7" not in (copy.places(ids) or {})
    await copy.close()


async def test_updates_out_of_order_wait_for_the_missing_one(
    live: tuple[LiveQuizzes, AnswerBook, LiveBoard],
) -> None:
    quizzes, book, board = live
    quiz_id = await a_running_quiz(quizzes, 20)
    copy = BoardCopy(board, quiz_id)
    copy.start()
    await read(copy)
    await book.submit(quiz_id, 0, "p1", 1, EPOCH + 61_000)
    first = await take(board, quiz_id)
    await book.submit(quiz_id, 0, "p2", 1, EPOCH + 61_500)
    second = await take(board, quiz_id)

    copy.on_update(second[-1])
    assert not copy.level  # the first is missing
    copy.on_update(first[-1])

    assert copy.level
    ids = [f"p{i}" for i in range(20)]
    assert copy.places(ids) == await redis_places(board, quiz_id, ids)
    await copy.close()


async def test_a_gap_that_stays_or_a_rebuilt_board_is_read_afresh(
    live: tuple[LiveQuizzes, AnswerBook, LiveBoard], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(board_copy, "GAP_SECONDS", 0.05)
    quizzes, book, board = live
    quiz_id = await a_running_quiz(quizzes, 20)
    copy = BoardCopy(board, quiz_id)
    copy.start()
    await read(copy)
    await book.submit(quiz_id, 0, "p1", 1, EPOCH + 61_000)
    await take(board, quiz_id)  # lost on its way
    await book.submit(quiz_id, 0, "p2", 1, EPOCH + 61_500)
    for update in await take(board, quiz_id):
        copy.on_update(update)
    assert not copy.level

    await asyncio.sleep(0.1)  # the gap stayed: read afresh
    await read(copy)
    await book.submit(quiz_id, 0, "p3", 1, EPOCH + 62_000)
    for update in await take(board, quiz_id):
        copy.on_update(update)
    ids = [f"p{i}" for i in range(20)]
    assert copy.reads == 2
    assert copy.places(ids) == await redis_places(board, quiz_id, ids)

    # Redis lost the quiz and it was rebuilt: a new generation, read afresh.
    quiz = a_quiz(quiz_id, instant_feedback=True)
    await quizzes.write_rebuilt(
        RebuiltState(quiz, QUESTIONS, {"p1": "N1", "p9": "N9"}, {"p9": (5, 1)}, {})
    )
    for update in await take(board, quiz_id):
        copy.on_update(update)
    await read(copy)
    for update in await take(board, quiz_id):
        copy.on_update(update)
    await soon(lambda: copy.level)
    assert copy.reads == 3
    assert copy.places(["p1", "p9", "p3"]) == {"p9": (1, 5), "p1": (2, 0)}
    await copy.close()


async def test_a_board_the_copy_cannot_hold_is_left_to_redis(
    live: tuple[LiveQuizzes, AnswerBook, LiveBoard],
) -> None:
    quizzes, _, board = live
    quiz_id = await a_running_quiz(quizzes, 3)
    await quizzes.enrol(quiz_id, [("x" * 40, "Long")], reached_ms=20)  # not an id the API makes
    copy = BoardCopy(board, quiz_id)
    copy.start()
    await soon(lambda: copy.broken)

    for update in await take(board, quiz_id):
        copy.on_update(update)

    assert copy.places(["p1"]) is None  # the caller asks Redis
    assert copy.reads == 1  # and the board is not read again and again
    await copy.close()


async def test_while_the_copy_is_not_level_only_a_few_ranks_are_asked_of_redis(
    live: tuple[LiveQuizzes, AnswerBook, LiveBoard], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(standings, "REDIS_MOST", 2)
    quizzes, _, board = live
    quiz_id = await a_running_quiz(quizzes, 5)
    copy = BoardCopy(board, quiz_id)  # never read: not level
    mine = Standings(board, copy, quiz_id)

    one = await mine.yours(["p1"], board_size=5)  # a new watcher's greeting
    crowd = await mine.yours(["p1", "p2", "p3"], board_size=5)

    assert one["p1"]  # ranked by Redis
    assert crowd == {}  # the crowd keeps its last standing until the copy is level
    assert mine.counts == {"copy": 0, "redis": 1}
