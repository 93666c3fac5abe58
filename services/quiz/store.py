"""SQL access for quizzes, questions and players (the system of record)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.core.errors import NotFound
from services.database.tables import players, questions, quizzes


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
                    id=player_id, quiz_id=quiz_id, nickname=nickname, joined_ms=joined_ms
                )
            )
        except IntegrityError as e:
            raise DuplicateKey(nickname) from e

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
                )
                .limit(limit)
            )
            return [_quiz(r) for r in rows]

    async def active_ids(self, limit: int = 10_000) -> list[str]:
        """Quizzes that must have live state in Redis (joinable or running)."""
        async with self.engine.connect() as conn:
            ids = await conn.scalars(
                select(quizzes.c.id).where(quizzes.c.state.in_(("OPEN", "RUNNING"))).limit(limit)
            )
            return list(ids)
