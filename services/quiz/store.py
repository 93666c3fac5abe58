"""SQL access for quizzes, questions and players (the system of record)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services import ids
from services.database.tables import nickname_key, players, questions, quizzes
from services.live.board import QuizKeys, pack
from services.mesh.clock import now_ms
from services.mesh.errors import FailedPrecondition, NotFound, Unavailable
from services.quiz import rules

# The bulk form of services.quiz.live.ADD_PLAYER: the same three writes per player
# (0 points at the join time, the nickname, the version step), applied only while
# the quiz's live state exists, for a whole batch in one atomic step.
# ARGV: the packed score (one join time per batch), then player id, nickname, ...
ENROL_PLAYERS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 2, #ARGV, 2 do
  redis.call('ZADD', KEYS[2], 'NX', ARGV[1], ARGV[i])
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
end
redis.call('HINCRBY', KEYS[1], 'version', (#ARGV - 1) / 2)
return 1
"""
# Players per SQL transaction and Redis script call (a few ms of Redis time each).
ENROL_BATCH = 5_000
ENROL_IN_FLIGHT = 3


@dataclass(frozen=True, slots=True)
class Question:
    index: int
    text: str
    choices: list[str]
    correct_choice: int
    points: int
    time_limit_ms: int


@dataclass(frozen=True, slots=True)
class QuizRecord:
    id: str
    title: str
    host: str
    state: str  # OPEN, RUNNING, CLOSED
    question_count: int
    current_question: int
    question_opened_ms: int | None
    question_deadline_ms: int | None
    closed_question: int
    created_ms: int
    board_final: bool
    started_ms: int | None = None
    closed_ms: int | None = None
    close_reason: int = 0
    # Set while the last host transition awaits its announcement (see Lifecycle).
    unannounced_ms: int | None = None

    def question_closed(self, index: int, now: int) -> bool:
        """Whether question `index` no longer takes answers (so its answer may be shown)."""
        if index > self.current_question:
            return False
        if index < self.current_question or self.state == "CLOSED":
            return True
        return (self.question_deadline_ms or 0) <= now


def _quiz(row: object) -> QuizRecord:
    m = row._mapping  # type: ignore[attr-defined]
    return QuizRecord(
        id=m["id"],
        title=m["title"],
        host=m["host"],
        state=m["state"],
        question_count=m["question_count"],
        current_question=m["current_question"],
        question_opened_ms=m["question_opened_ms"],
        question_deadline_ms=m["question_deadline_ms"],
        closed_question=m["closed_question"],
        created_ms=m["created_ms"],
        board_final=bool(m["board_final"]),
        started_ms=m["started_ms"],
        closed_ms=m["closed_ms"],
        close_reason=m["close_reason"],
        unannounced_ms=m["unannounced_ms"],
    )


async def insert_players(
    conn: AsyncConnection, quiz_id: str, rows: Iterable[tuple[str, str]], joined_ms: int
) -> None:
    """Many new `players` rows (id from `ids.new_player_id`, nickname) in one
    statement, in key order: InnoDB then fills pages instead of splitting them at
    random (twice the rate on a table of a million rows)."""
    ordered = sorted(rows)
    # aiomysql escapes every value of an executemany in Python, the main cost of a
    # bulk insert; the ids are hex and times integers, so on MySQL only nicknames
    # (and the quiz id, once) go through the driver's escaping for this connection.
    escape: Callable[[str], str] | None = None
    if conn.dialect.name == "mysql":
        escape = getattr((await conn.get_raw_connection()).driver_connection, "escape", None)
    if escape is None:
        await conn.execute(
            insert(players),
            [
                {
                    "id": p,
                    "quiz_id": quiz_id,
                    "nickname": n,
                    "nickname_key": nickname_key(n),
                    "joined_ms": joined_ms,
                }
                for p, n in ordered
            ],
        )
        return
    quiz = escape(quiz_id)
    values = ",".join(
        f"('{p}',{quiz},{escape(n)},{escape(nickname_key(n))},{int(joined_ms)})" for p, n in ordered
    )
    await conn.exec_driver_sql(
        f"INSERT INTO {players.name} (id, quiz_id, nickname, nickname_key, joined_ms) "
        f"VALUES {values}",
        execution_options={"no_parameters": True},
    )


class DuplicateKey(Exception):
    """A unique key (quiz code, nickname in a quiz) is already taken."""


class QuizStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create(
        self, quiz_id: str, title: str, host: str, created_ms: int, qs: list[Question]
    ) -> None:
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    insert(quizzes).values(
                        id=quiz_id,
                        title=title,
                        host=host,
                        state="OPEN",
                        question_count=len(qs),
                        current_question=-1,
                        closed_question=-1,
                        close_reason=0,
                        created_ms=created_ms,
                    )
                )
                await conn.execute(
                    insert(questions),
                    [
                        {
                            "quiz_id": quiz_id,
                            "idx": q.index,
                            "text": q.text,
                            "choices": json.dumps(q.choices),
                            "correct_choice": q.correct_choice,
                            "points": q.points,
                            "time_limit_ms": q.time_limit_ms,
                        }
                        for q in qs
                    ],
                )
        except IntegrityError as e:
            raise DuplicateKey(quiz_id) from e

    async def get(self, quiz_id: str, conn: AsyncConnection | None = None) -> QuizRecord:
        query = select(quizzes).where(quizzes.c.id == quiz_id)
        if conn is None:
            async with self.engine.connect() as c:
                row = (await c.execute(query)).first()
        else:
            row = (await conn.execute(query)).first()
        if row is None:
            raise NotFound(f"quiz {quiz_id} not found")
        return _quiz(row)

    async def questions(self, quiz_id: str) -> list[Question]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(questions).where(questions.c.quiz_id == quiz_id).order_by(questions.c.idx)
            )
            return [
                Question(
                    index=r.idx,
                    text=r.text,
                    choices=json.loads(r.choices),
                    correct_choice=r.correct_choice,
                    points=r.points,
                    time_limit_ms=r.time_limit_ms,
                )
                for r in rows
            ]

    async def page(self, offset: int, limit: int) -> list[QuizRecord]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(quizzes)
                .order_by(quizzes.c.created_ms.desc(), quizzes.c.id)
                .offset(offset)
                .limit(limit)
            )
            return [_quiz(r) for r in rows]

    async def player_count(self, quiz_id: str) -> int:
        async with self.engine.connect() as conn:
            count = await conn.scalar(
                select(func.count()).select_from(players).where(players.c.quiz_id == quiz_id)
            )
            return int(count or 0)

    async def add_player(
        self, conn: AsyncConnection, quiz_id: str, player_id: str, nickname: str, joined_ms: int
    ) -> None:
        try:
            await conn.execute(
                insert(players).values(
                    id=player_id,
                    quiz_id=quiz_id,
                    nickname=nickname,
                    nickname_key=nickname_key(nickname),
                    joined_ms=joined_ms,
                )
            )
        except IntegrityError as e:
            raise DuplicateKey(nickname) from e

    async def enrol_players(
        self,
        redis: Redis,
        key_prefix: str,
        quiz_id: str,
        nicknames: Sequence[str],
        batch_size: int = ENROL_BATCH,
        progress: Callable[[int], None] | None = None,
    ) -> list[str]:
        """JoinQuiz in bulk (load tests, imports): for each nickname exactly the rows
        and keys a join writes (SQL `players` row; Redis board entry at 0 points
        ranked by join time, nickname, version step), in batches that each commit
        their SQL rows with their Redis writes. Returns the new player ids in order.
        Nothing is announced: the caller hints the leaderboard once at the end.

        If a batch fails (a nickname taken, a dependency away), the batches still in
        flight are cancelled and the error raised; batches that committed stay, like
        joins that succeeded before a failed one."""
        quiz = await self.get(quiz_id)
        if quiz.state != "OPEN":
            raise FailedPrecondition(f"quiz {quiz_id} has already started; joining is closed")
        keys = QuizKeys(key_prefix, quiz_id)
        enrol = redis.register_script(ENROL_PLAYERS)
        # A few batches at a time: while one is inside MySQL the next is prepared
        # and sent (about twice the rate of one at a time, on two cores).
        in_flight = asyncio.Semaphore(ENROL_IN_FLIGHT)
        done = 0

        async def one(start: int) -> list[str]:
            nonlocal done
            async with in_flight:
                batch = await self._enrol_batch(
                    redis, enrol, keys, quiz, nicknames[start : start + batch_size]
                )
            done += len(batch)
            if progress is not None:
                progress(done)
            return batch

        tasks = [asyncio.create_task(one(start)) for start in range(0, len(nicknames), batch_size)]
        player_ids: list[str] = []
        try:
            for task in tasks:
                player_ids += await task
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return player_ids

    async def _enrol_batch(
        self,
        redis: Redis,
        enrol: AsyncScript,
        keys: QuizKeys,
        quiz: QuizRecord,
        nicknames: Sequence[str],
    ) -> list[str]:
        names = [rules.nickname(n) for n in nicknames]
        batch = [ids.new_player_id() for _ in names]
        joined = now_ms()
        args: list[str | float] = [pack(0, joined - quiz.created_ms)]
        for pid, name in zip(batch, names, strict=True):
            args += (pid, name)
        try:
            async with self.engine.begin() as conn:
                try:
                    await insert_players(conn, quiz.id, zip(batch, names, strict=True), joined)
                except IntegrityError as e:
                    raise DuplicateKey(quiz.id) from e
                # Inside the transaction, as in JoinQuiz: if Redis fails, the rows roll back.
                if not await enrol(keys=[keys.state, keys.board, keys.nicknames], args=args):
                    raise Unavailable(f"the live state of quiz {quiz.id} is being restored; retry")
        except BaseException:
            async with redis.pipeline(transaction=True) as pipe:
                pipe.zrem(keys.board, *batch)
                pipe.hdel(keys.nicknames, *batch)
                await pipe.execute()
            raise
        return batch

    async def transition(
        self, conn: AsyncConnection, quiz_id: str, expect: dict[str, object], **values: object
    ) -> bool:
        """Compare-and-set on a quiz row: only one of several racing replicas wins."""
        conditions = [quizzes.c.id == quiz_id] + [quizzes.c[k] == v for k, v in expect.items()]
        result = await conn.execute(update(quizzes).where(*conditions).values(**values))
        return bool(result.rowcount == 1)

    async def due_questions(self, now: int, limit: int = 100) -> list[QuizRecord]:
        """Running quizzes whose open question's deadline passed and was not announced."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(quizzes)
                .where(
                    quizzes.c.state == "RUNNING",
                    quizzes.c.question_deadline_ms <= now,
                    quizzes.c.closed_question < quizzes.c.current_question,
                    # Its opening first: a close must not reach watchers before it.
                    quizzes.c.unannounced_ms.is_(None),
                )
                .limit(limit)
            )
            return [_quiz(r) for r in rows]

    async def unannounced(self, before_ms: int, limit: int = 100) -> list[QuizRecord]:
        """Quizzes whose last host transition, made before `before_ms`, is not known
        to have been announced."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(quizzes).where(quizzes.c.unannounced_ms <= before_ms).limit(limit)
            )
            return [_quiz(r) for r in rows]

    async def mark_announced(self, quiz_id: str, transition_ms: int) -> None:
        """Records that the transition made at `transition_ms` was announced (a later
        transition keeps its own mark)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(quizzes)
                .where(quizzes.c.id == quiz_id, quizzes.c.unannounced_ms == transition_ms)
                .values(unannounced_ms=None)
            )

    async def active_ids(self, limit: int = 10_000) -> list[str]:
        """Quizzes that must have live state in Redis (joinable or running)."""
        async with self.engine.connect() as conn:
            ids = await conn.scalars(
                select(quizzes.c.id).where(quizzes.c.state.in_(("OPEN", "RUNNING"))).limit(limit)
            )
            return list(ids)
