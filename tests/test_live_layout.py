"""The live state's layout (services/live/layout.py) is the one description every
writer and reader follows, Python and Lua alike: each record written one way reads
back the same the other way, against a real Redis."""

from __future__ import annotations

import dataclasses
import itertools
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources

import pytest
from redis.asyncio import Redis

from services.database.records import Question, QuizRecord, QuizState
from services.live.answers import AnswerBook, PlayerAnswers
from services.live.board import LiveBoard
from services.live.keys import QuizKeys
from services.live.layout import (
    SCALE,
    Answer,
    Field,
    QuestionSpec,
    answer_count_field,
    answer_field,
    choice_count_field,
    pack,
    points_of,
)
from services.live.pipeline import PipelinedRedis, RedisAddress
from services.live.quizzes import REVEAL_CHUNK, LiveQuizzes, RebuiltState
from tests.stack import Backends, forget

EPOCH = 1_700_000_000_000
QUESTIONS = [
    Question(0, "2 + 2?", ["3", "4", "5"], correct_choice=1, points=1000, time_limit_ms=10_000),
    Question(
        1,
        "Capital of France?",
        ["Paris", "Rome"],
        correct_choice=0,
        points=500,
        time_limit_ms=4_000,
    ),
]


def a_quiz(
    quiz_id: str, state: QuizState = QuizState.OPEN, instant_feedback: bool = True
) -> QuizRecord:
    return QuizRecord(
        id=quiz_id,
        title="layout",
        host="alice",
        state=state,
        question_count=len(QUESTIONS),
        current_question=-1,
        question_opened_ms=None,
        question_deadline_ms=None,
        closed_question=-1,
        created_ms=EPOCH,
        board_final=False,
        instant_feedback=instant_feedback,
    )


@pytest.fixture(scope="module")
async def prefix(backends: Backends) -> AsyncIterator[str]:
    tag = uuid.uuid4().hex[:10]
    try:
        yield f"t{tag}:"
    finally:
        await forget(backends, f"t{tag}:", f"t{tag}")


@pytest.fixture(scope="module")
async def pipe(backends: Backends) -> AsyncIterator[PipelinedRedis]:
    pipe = PipelinedRedis(RedisAddress.parse(backends.redis_url))
    try:
        yield pipe
    finally:
        await pipe.close()


def test_records_read_back_as_written() -> None:
    spec = QuestionSpec(correct_choice=2, points=750, time_limit_ms=12_000, choices=4)
    assert QuestionSpec.parse(spec.record()) == spec
    assert spec.record() == "2|750|12000|4"
    answer = Answer(3, choice_index=1, correct=True, points_awarded=980, answered_ms=EPOCH + 5)
    assert Answer.parse(3, answer.record()) == answer
    assert answer.record() == f"1|1|980|{EPOCH + 5}"


@pytest.mark.parametrize("points", [0, 1, 999, 1_000_000, 2**22 - 1])
@pytest.mark.parametrize("reached_ms", [0, 1, 86_400_000, 2**31 - 1])
def test_a_packed_score_gives_back_its_points_and_ranks_earlier_first(
    points: int, reached_ms: int
) -> None:
    packed = pack(points, reached_ms)
    assert packed == int(packed)  # exact in a double
    assert points_of(packed) == points
    if reached_ms:
        assert pack(points, reached_ms - 1) > packed  # reached earlier, ranked higher
    assert pack(points + 1, 2**31 - 1) > pack(points, 0)  # more points always rank higher


def test_every_state_field_the_scripts_name_is_in_the_layout() -> None:
    """A field the Lua scripts read or write but the layout does not declare would be
    a second, silent description of the state hash."""
    declared = {f.value for f in Field}
    scripts = resources.files("services.live.scripts")
    named: dict[str, set[str]] = {}
    for script in scripts.iterdir():
        if not script.name.endswith(".lua"):
            continue
        text = script.read_text()
        # The state hash is KEYS[1] in every script that touches it (or `state`).
        for call in re.finditer(
            r"redis\.call\('(?:HGET|HMGET|HSET|HINCRBY)',\s*(?:KEYS\[1\]|state)((?:,\s*'[^']*')+)",
            text,
        ):
            for name in re.findall(r"'([^']*)'", call.group(1)):
                named.setdefault(name.rstrip(":"), set()).add(script.name)
    assert named, "no state hash access found: the pattern is stale"
    # Per-question fields: answers:<q> (answer_count_field), choices:<q>:<c>
    # (choice_count_field).
    assert set(named) - declared <= {"answers", "choices"}, named
    assert answer_count_field(3) == "answers:3"
    assert choice_count_field(3, 1) == "choices:3:1"


async def test_a_published_quiz_is_judged_scored_and_read_as_the_layout_says(
    backends: Backends, prefix: str, pipe: PipelinedRedis
) -> None:
    redis = Redis.from_url(backends.redis_url, decode_responses=True)
    try:
        live = LiveQuizzes(redis, prefix)
        book = AnswerBook(redis, pipe, prefix)
        board = LiveBoard(pipe, prefix)
        quiz_id = f"L{uuid.uuid4().hex[:8].upper()}"
        keys = QuizKeys(prefix, quiz_id)

        # Python writes the quiz; the scripts read status, version and specs.
        await live.publish(a_quiz(quiz_id), QUESTIONS)
        spec = await redis.hget(keys.questions, "1")
        assert isinstance(spec, str), spec  # decode_responses: text, or None if missing
        assert QuestionSpec.parse(spec) == QuestionSpec.of(QUESTIONS[1])
        await live.enrol(quiz_id, [("p1", "Ann"), ("p2", "Bo")], reached_ms=10)
        snapshot = await board.snapshot(quiz_id, 10)
        assert snapshot is not None
        assert (snapshot.version, snapshot.total_players, snapshot.is_final) == (2, 2, False)
        # Same points, same time: the greater member first, as ZREVRANGE orders them.
        assert [e.player_id for e in snapshot.entries] == ["p2", "p1"]

        opened = EPOCH + 60_000
        await live.open_question(quiz_id, 0, opened, opened + 10_000)
        # The answer script reads the spec, the open question and its times, and
        # writes the answer record, the count and the packed total.
        now = opened + 2_000
        outcome = await book.submit(quiz_id, 0, "p2", 1, now)
        assert outcome.kind == "accepted"
        assert outcome.answer == Answer(0, 1, True, 900, now)  # 1000 * (1 - 2/20)
        assert await redis.hget(keys.answers, answer_field(0, "p2")) == outcome.answer.record()
        assert await redis.hget(keys.state, answer_count_field(0)) == "1"
        packed = await redis.zscore(keys.board, "p2")
        assert packed is not None
        assert packed == pack(900, now - EPOCH)
        assert points_of(packed) == outcome.total_score == 900
        assert SCALE == 2**31

        snapshot = await board.snapshot(quiz_id, 10)
        assert snapshot is not None
        assert (snapshot.question_index, snapshot.question_answers) == (0, 1)
        assert snapshot.changed_at.ToMilliseconds() == now
        assert [(e.rank, e.player_id, e.score) for e in snapshot.entries] == [
            (1, "p2", 900),
            (2, "p1", 0),
        ]
        told = PlayerAnswers(900, [(outcome.answer, True)])
        assert await book.player_answers(quiz_id, "p2", now) == told

        await live.close(quiz_id, now + 1)
        page = await board.page(quiz_id, None, 10)
        assert page is not None
        assert page.status is QuizState.CLOSED
        assert await redis.hget(keys.state, Field.CLOSED_AT) == str(now + 1)
    finally:
        await redis.aclose()


async def test_a_rebuilt_state_is_read_by_the_scripts_as_the_original_was(
    backends: Backends, prefix: str, pipe: PipelinedRedis
) -> None:
    """What recovery writes (Python) is what the answer script wrote (Lua): a retry
    of a rebuilt answer replays the original, and the board ranks as before."""
    redis = Redis.from_url(backends.redis_url, decode_responses=True)
    try:
        live = LiveQuizzes(redis, prefix)
        book = AnswerBook(redis, pipe, prefix)
        quiz_id = f"R{uuid.uuid4().hex[:8].upper()}"
        opened = EPOCH + 60_000
        quiz = dataclasses.replace(
            a_quiz(quiz_id, QuizState.RUNNING),
            current_question=0,
            question_opened_ms=opened,
            question_deadline_ms=opened + 10_000,
        )
        original = Answer(0, 1, True, 950, opened + 1_000)
        await live.write_rebuilt(
            RebuiltState(
                quiz=quiz,
                questions=QUESTIONS,
                nicknames={"p1": "Ann", "p2": "Bo"},
                scores={"p1": (950, original.answered_ms - EPOCH), "p2": (0, 5)},
                answers={answer_field(0, "p1"): original.record()},
                answer_counts={0: 1},
                changed_at=original.answered_ms,
            )
        )
        replay = await book.submit(quiz_id, 0, "p1", 1, opened + 3_000)
        assert (replay.kind, replay.answer, replay.total_score) == ("replay", original, 950)
        fresh = await book.submit(quiz_id, 0, "p2", 0, opened + 3_000)
        assert fresh.kind == "accepted"
        assert fresh.answer is not None
        assert not fresh.answer.correct
        page = await LiveBoard(pipe, prefix).page(quiz_id, None, 10)
        assert page is not None
        assert [(e.player_id, e.nickname, e.score) for e in page.entries] == [
            ("p1", "Ann", 950),
            ("p2", "Bo", 0),
        ]
    finally:
        await redis.aclose()


async def test_without_instant_feedback_results_and_the_board_wait_for_the_close(
    backends: Backends, prefix: str, pipe: PipelinedRedis
) -> None:
    """The default quiz: an answer is judged at once but its result, the player's
    total and the board stay as they were until the question closes."""
    redis = Redis.from_url(backends.redis_url, decode_responses=True)
    try:
        live = LiveQuizzes(redis, prefix)
        book = AnswerBook(redis, pipe, prefix)
        board = LiveBoard(pipe, prefix)
        quiz_id = f"W{uuid.uuid4().hex[:8].upper()}"
        keys = QuizKeys(prefix, quiz_id)
        await live.publish(a_quiz(quiz_id, instant_feedback=False), QUESTIONS)
        await live.enrol(quiz_id, [("p1", "Ann"), ("p2", "Bo")], reached_ms=10)
        opened = EPOCH + 60_000
        deadline = opened + 10_000
        await live.open_question(quiz_id, 0, opened, deadline)
        now = opened + 2_000

        outcome = await book.submit(quiz_id, 0, "p2", 1, now)
        assert outcome.answer == Answer(0, 1, True, 900, now)
        assert (outcome.revealed, outcome.total_score, outcome.running_total) == (False, 0, 900)
        replay = await book.submit(quiz_id, 0, "p2", 1, now + 1)
        assert (replay.kind, replay.revealed, replay.total_score) == ("replay", False, 0)
        assert await book.player_answers(quiz_id, "p2", now) == PlayerAnswers(
            0, [(outcome.answer, False)]
        )
        snapshot = await board.snapshot(quiz_id, 10)
        assert snapshot is not None
        assert snapshot.question_answers == 1  # the count is no secret
        assert [(e.player_id, e.score) for e in snapshot.entries] == [("p2", 0), ("p1", 0)]

        # Past the deadline the result is told, even before the sweep reveals it.
        late = await book.submit(quiz_id, 0, "p2", 1, deadline + 1)
        assert (late.revealed, late.total_score) == (True, 900)
        assert await book.player_answers(quiz_id, "p2", deadline + 1) == PlayerAnswers(
            900, [(outcome.answer, True)]
        )

        version = (await board.snapshot(quiz_id, 10) or snapshot).version
        await live.end_question(quiz_id, deadline)
        assert await redis.zscore(keys.board, "p2") == pack(900, now - EPOCH)
        assert await redis.exists(keys.pending) == 0
        moved = await board.snapshot(quiz_id, 10)
        assert moved is not None
        assert moved.version > version
        assert moved.changed_at.ToMilliseconds() == deadline
        assert [(e.player_id, e.score) for e in moved.entries] == [("p2", 900), ("p1", 0)]
    finally:
        await redis.aclose()


async def test_a_reveal_of_a_crowd_goes_in_chunks_and_keeps_who_left_off_the_board(
    backends: Backends, prefix: str, pipe: PipelinedRedis
) -> None:
    redis = Redis.from_url(backends.redis_url, decode_responses=True)
    try:
        live = LiveQuizzes(redis, prefix)
        quiz_id = f"C{uuid.uuid4().hex[:8].upper()}"
        keys = QuizKeys(prefix, quiz_id)
        await live.publish(a_quiz(quiz_id, instant_feedback=False), QUESTIONS)
        crowd = [(f"p{i}", f"N{i}") for i in range(2 * REVEAL_CHUNK + 5)]
        await live.enrol(quiz_id, crowd, reached_ms=10)
        await redis.zadd(
            keys.pending, {pid: pack(500, 1_000 + i) for i, (pid, _) in enumerate(crowd)}
        )
        await live.remove(quiz_id, ["p7"])
        before = int(await redis.hget(keys.state, Field.VERSION) or 0)

        await live.reveal(quiz_id, EPOCH + 5)

        assert await redis.exists(keys.pending) == 0
        assert await redis.zscore(keys.board, "p7") is None
        assert await redis.zcard(keys.board) == len(crowd) - 1
        assert await redis.zscore(keys.board, f"p{len(crowd) - 1}") == pack(500, len(crowd) + 999)
        # One step per chunk, so a watcher skipping seen versions misses none.
        assert int(await redis.hget(keys.state, Field.VERSION) or 0) == before + 3
    finally:
        await redis.aclose()


async def test_a_rebuilt_open_question_keeps_its_totals_pending(
    backends: Backends, prefix: str, pipe: PipelinedRedis
) -> None:
    redis = Redis.from_url(backends.redis_url, decode_responses=True)
    try:
        live = LiveQuizzes(redis, prefix)
        book = AnswerBook(redis, pipe, prefix)
        quiz_id = f"P{uuid.uuid4().hex[:8].upper()}"
        keys = QuizKeys(prefix, quiz_id)
        opened = EPOCH + 60_000
        quiz = dataclasses.replace(
            a_quiz(quiz_id, QuizState.RUNNING, instant_feedback=False),
            current_question=0,
            question_opened_ms=opened,
            question_deadline_ms=opened + 10_000,
        )
        original = Answer(0, 1, True, 950, opened + 1_000)
        await live.write_rebuilt(
            RebuiltState(
                quiz=quiz,
                questions=QUESTIONS,
                nicknames={"p1": "Ann"},
                scores={"p1": (0, 5)},
                answers={answer_field(0, "p1"): original.record()},
                answer_counts={0: 1},
                pending={"p1": (950, original.answered_ms - EPOCH)},
            )
        )
        replay = await book.submit(quiz_id, 0, "p1", 1, opened + 2_000)
        assert (replay.revealed, replay.total_score, replay.running_total) == (False, 0, 950)
        await live.reveal(quiz_id, opened + 10_000)
        assert await redis.zscore(keys.board, "p1") == pack(950, original.answered_ms - EPOCH)
    finally:
        await redis.aclose()


async def test_every_change_a_snapshot_shows_steps_the_version(
    backends: Backends, prefix: str, pipe: PipelinedRedis
) -> None:
    """The contract (common.proto): a watcher that skips versions it has seen must
    miss nothing. Joining, a question opening, an answer and the close each change
    what a snapshot shows, so each steps the version."""
    redis = Redis.from_url(backends.redis_url, decode_responses=True)
    try:
        live = LiveQuizzes(redis, prefix)
        book = AnswerBook(redis, pipe, prefix)
        board = LiveBoard(pipe, prefix)
        quiz_id = f"V{uuid.uuid4().hex[:8].upper()}"
        opened = EPOCH + 60_000
        steps: dict[str, Callable[[], Awaitable[object]]] = {
            "published": lambda: live.publish(a_quiz(quiz_id), QUESTIONS),
            "joined": lambda: live.enrol(quiz_id, [("p1", "Ann")], reached_ms=10),
            "question 0 opened": lambda: live.open_question(quiz_id, 0, opened, opened + 10_000),
            "answered": lambda: book.submit(quiz_id, 0, "p1", 1, opened + 1_000),
            "question 1 opened": lambda: live.open_question(
                quiz_id, 1, opened + 20_000, opened + 24_000
            ),
            "closed": lambda: live.close(quiz_id, opened + 30_000),
        }
        seen: list[tuple[str, int, bytes]] = []
        for step, write in steps.items():
            await write()
            snapshot = await board.snapshot(quiz_id, 10)
            assert snapshot is not None, step
            version = snapshot.version
            snapshot.version = 0
            seen.append((step, version, snapshot.SerializeToString(deterministic=True)))

        for (_, v0, shown0), (after, v1, shown1) in itertools.pairwise(seen):
            assert shown0 != shown1, f"{after} changed nothing a snapshot shows"
            assert v1 > v0, f"{after} changed the snapshot but not its version ({v0} -> {v1})"
    finally:
        await redis.aclose()
