"""Quizzes, questions and players as the system of record holds them, and the reads
every part may make of them (the quiz service writes them; recovery, the stream and
leaderboard services and the tools read them)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.database.tables import answers, players, questions, quizzes
from services.mesh.errors import NotFound, Reason
from services.mesh.paging import QuizCursor


class QuizState(StrEnum):
    """A quiz's lifecycle, in the same words in SQL (`quizzes.state`) and Redis (the
    live state's `status`): OPEN for joining -> RUNNING -> CLOSED."""

    OPEN = "OPEN"
    RUNNING = "RUNNING"
    CLOSED = "CLOSED"


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
    state: QuizState
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
    # Set while the last host transition awaits its announcement (see the quiz
    # service's lifecycle).
    unannounced_ms: int | None = None
    # Whether answers' results and the board move as answers arrive (else when
    # each question closes).
    instant_feedback: bool = False
    # The library quiz this game was made from, if any.
    library_quiz_id: str | None = None
    # Players may join while it runs; the host has locked the lobby.
    allow_late_join: bool = False
    lobby_locked: bool = False

    def question_closed(self, index: int, now: int) -> bool:
        """Whether question `index` no longer takes answers (so its answer may be shown)."""
        if index > self.current_question:
            return False
        if index < self.current_question or self.state is QuizState.CLOSED:
            return True
        return (self.question_deadline_ms or 0) <= now


@dataclass(frozen=True, slots=True)
class PlayerRecord:
    id: str
    nickname: str
    joined_ms: int


@dataclass(frozen=True, slots=True)
class AnswerRecord:
    """An accepted answer as the sync job copied it into SQL."""

    question_index: int
    player_id: str
    choice_index: int
    correct: bool
    points_awarded: int
    answered_ms: int


def quiz_of(row: Any) -> QuizRecord:
    m = row._mapping
    return QuizRecord(
        id=m["id"],
        title=m["title"],
        host=m["host"],
        state=QuizState(m["state"]),
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
        instant_feedback=bool(m["instant_feedback"]),
        library_quiz_id=m["library_quiz_id"],
        allow_late_join=bool(m["allow_late_join"]),
        lobby_locked=bool(m["lobby_locked"]),
    )


class QuizRecords:
    """Reads of quizzes, their questions, players and synced answers."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def get(self, quiz_id: str, conn: AsyncConnection | None = None) -> QuizRecord:
        """The quiz; NotFound for an unknown one. Inside `conn`'s transaction if given."""
        query = select(quizzes).where(quizzes.c.id == quiz_id)
        if conn is None:
            async with self.engine.connect() as c:
                row = (await c.execute(query)).first()
        else:
            row = (await conn.execute(query)).first()
        if row is None:
            raise NotFound(f"quiz {quiz_id} not found", Reason.ERROR_REASON_QUIZ_NOT_FOUND)
        return quiz_of(row)

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

    async def page(
        self, after: QuizCursor | None, limit: int, host: str | None = None
    ) -> list[QuizRecord]:
        """Quizzes (of `host` only, if given), newest first, from right after `after`
        (a keyset read on created_ms: a quiz created meanwhile never shifts a later
        page)."""
        query = select(quizzes).order_by(quizzes.c.created_ms.desc(), quizzes.c.id).limit(limit)
        if host is not None:
            query = query.where(quizzes.c.host == host)
        if after is not None:
            query = query.where(
                or_(
                    quizzes.c.created_ms < after.created_ms,
                    and_(quizzes.c.created_ms == after.created_ms, quizzes.c.id > after.quiz_id),
                )
            )
        async with self.engine.connect() as conn:
            return [quiz_of(r) for r in await conn.execute(query)]

    async def player_count(self, quiz_id: str) -> int:
        async with self.engine.connect() as conn:
            count = await conn.scalar(
                select(func.count()).select_from(players).where(players.c.quiz_id == quiz_id)
            )
            return int(count or 0)

    async def players(self, quiz_id: str) -> list[PlayerRecord]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(players.c.id, players.c.nickname, players.c.joined_ms).where(
                    players.c.quiz_id == quiz_id
                )
            )
            return [PlayerRecord(r.id, r.nickname, r.joined_ms) for r in rows]

    async def answers(self, quiz_id: str) -> list[AnswerRecord]:
        """The answers of the quiz the sync job has copied so far."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(answers).where(answers.c.quiz_id == quiz_id))
            return [
                AnswerRecord(
                    r.question_idx, r.player_id, r.choice, bool(r.correct), r.points, r.answered_ms
                )
                for r in rows
            ]

    async def active_ids(self, limit: int = 10_000) -> list[str]:
        """Quizzes that must have live state in Redis (joinable or running)."""
        async with self.engine.connect() as conn:
            ids = await conn.scalars(
                select(quizzes.c.id)
                .where(quizzes.c.state.in_((QuizState.OPEN, QuizState.RUNNING)))
                .limit(limit)
            )
            return list(ids)
