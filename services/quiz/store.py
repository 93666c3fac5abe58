"""The quiz service's SQL: the writes it owns (quizzes, questions, players) and the
reads its lifecycle needs, beside every read of services/database/records.py."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.database.literals import execute_rendered, mysql_quoting
from services.database.records import Question, QuizRecord, QuizRecords, QuizState, quiz_of
from services.database.tables import nickname_key, players, questions, quizzes


class DuplicateKey(Exception):
    """A unique key (quiz code, nickname in a quiz) is already taken."""


class QuizStore(QuizRecords):
    async def create(
        self,
        quiz_id: str,
        title: str,
        host: str,
        created_ms: int,
        qs: list[Question],
        instant_feedback: bool = False,
        library_quiz_id: str | None = None,
        allow_late_join: bool = False,
    ) -> None:
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    insert(quizzes).values(
                        id=quiz_id,
                        title=title,
                        host=host,
                        state=QuizState.OPEN,
                        question_count=len(qs),
                        current_question=-1,
                        closed_question=-1,
                        close_reason=0,
                        created_ms=created_ms,
                        instant_feedback=instant_feedback,
                        library_quiz_id=library_quiz_id,
                        allow_late_join=allow_late_join,
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

    async def set_lobby(self, quiz_id: str, locked: bool) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(quizzes).where(quizzes.c.id == quiz_id).values(lobby_locked=locked)
            )

    async def add_players(
        self,
        conn: AsyncConnection,
        quiz_id: str,
        rows: Iterable[tuple[str, str]],
        joined_ms: int,
    ) -> None:
        """New `players` rows (id, nickname) in one statement, in key order: InnoDB
        then fills pages instead of splitting them at random (twice the rate on a
        table of a million rows). DuplicateKey when a nickname is taken."""
        ordered = sorted(rows)
        try:
            quote = await mysql_quoting(conn)
            if quote is None:
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
            quiz = quote(quiz_id)
            values = ",".join(
                f"({quote(p)},{quiz},{quote(n)},{quote(nickname_key(n))},{joined_ms:d})"
                for p, n in ordered
            )
            await execute_rendered(
                conn,
                f"INSERT INTO {players.name} (id, quiz_id, nickname, nickname_key, joined_ms) "
                f"VALUES {values}",
            )
        except IntegrityError as e:
            raise DuplicateKey(quiz_id) from e

    async def transition(
        self, conn: AsyncConnection, quiz_id: str, expect: Mapping[str, object], **values: object
    ) -> bool:
        """Compare-and-set on a quiz row: only one of several racing replicas wins."""
        conditions = [quizzes.c.id == quiz_id] + [quizzes.c[k] == v for k, v in expect.items()]
        result = await conn.execute(update(quizzes).where(*conditions).values(**values))
        return bool(result.rowcount == 1)

    async def question_opened(
        self, conn: AsyncConnection, quiz_id: str, index: int, opened_ms: int
    ) -> None:
        await conn.execute(
            update(questions)
            .where(questions.c.quiz_id == quiz_id, questions.c.idx == index)
            .values(opened_ms=opened_ms)
        )

    async def due_questions(self, now: int, limit: int = 100) -> list[QuizRecord]:
        """Running quizzes whose open question's deadline passed and was not announced."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(quizzes)
                .where(
                    quizzes.c.state == QuizState.RUNNING,
                    quizzes.c.question_deadline_ms <= now,
                    quizzes.c.closed_question < quizzes.c.current_question,
                    # Its opening first: a close must not reach watchers before it.
                    quizzes.c.unannounced_ms.is_(None),
                )
                .limit(limit)
            )
            return [quiz_of(r) for r in rows]

    async def unannounced(self, before_ms: int, limit: int = 100) -> list[QuizRecord]:
        """Quizzes whose last host transition, made before `before_ms`, is not known
        to have been announced."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(quizzes).where(quizzes.c.unannounced_ms <= before_ms).limit(limit)
            )
            return [quiz_of(r) for r in rows]

    async def mark_announced(self, quiz_id: str, transition_ms: int) -> None:
        """Records that the transition made at `transition_ms` was announced (a later
        transition keeps its own mark)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(quizzes)
                .where(quizzes.c.id == quiz_id, quizzes.c.unannounced_ms == transition_ms)
                .values(unannounced_ms=None)
            )
