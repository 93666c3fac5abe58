"""The quiz service's SQL for the quiz library (library_quizzes)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.database.tables import library_quizzes, quizzes
from services.mesh.errors import FailedPrecondition, NotFound, Reason
from services.mesh.paging import QuizCursor


@dataclass(frozen=True, slots=True)
class LibraryRecord:
    id: str
    host: str
    title: str
    # {"questions": [QuestionSpec as proto-named JSON], "instant_feedback": bool}
    content: dict[str, Any]
    version: int
    created_ms: int
    updated_ms: int


def _record(row: Any) -> LibraryRecord:
    return LibraryRecord(
        row.id,
        row.host,
        row.title,
        json.loads(row.content),
        row.version,
        row.created_ms,
        row.updated_ms,
    )


def not_found(library_quiz_id: str) -> NotFound:
    return NotFound(
        f"no quiz {library_quiz_id} in the library (never created, or deleted)",
        Reason.ERROR_REASON_LIBRARY_QUIZ_NOT_FOUND,
    )


class LibraryStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def add(self, record: LibraryRecord) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(library_quizzes).values(
                    id=record.id,
                    host=record.host,
                    title=record.title,
                    content=json.dumps(record.content),
                    version=record.version,
                    created_ms=record.created_ms,
                    updated_ms=record.updated_ms,
                )
            )

    async def get(self, library_quiz_id: str) -> LibraryRecord:
        """The library quiz; NotFound for an unknown (or deleted) one."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(library_quizzes).where(library_quizzes.c.id == library_quiz_id)
                )
            ).first()
        if row is None:
            raise not_found(library_quiz_id)
        return _record(row)

    async def page(self, host: str, after: QuizCursor | None, limit: int) -> list[LibraryRecord]:
        """A host's library, most recently changed first, from right after `after`."""
        c = library_quizzes.c
        query = (
            select(library_quizzes)
            .where(c.host == host)
            .order_by(c.updated_ms.desc(), c.id)
            .limit(limit)
        )
        if after is not None:
            query = query.where(
                or_(
                    c.updated_ms < after.created_ms,
                    and_(c.updated_ms == after.created_ms, c.id > after.quiz_id),
                )
            )
        async with self.engine.connect() as conn:
            return [_record(r) for r in await conn.execute(query)]

    async def replace(
        self,
        library_quiz_id: str,
        title: str,
        content: dict[str, Any],
        now_ms: int,
        expected_version: int | None,
    ) -> None:
        """New content, one version up; with `expected_version`, only over that one."""
        c = library_quizzes.c
        where = [c.id == library_quiz_id]
        if expected_version is not None:
            where.append(c.version == expected_version)
        async with self.engine.begin() as conn:
            done = await conn.execute(
                update(library_quizzes)
                .where(*where)
                .values(
                    title=title,
                    content=json.dumps(content),
                    version=c.version + 1,
                    updated_ms=now_ms,
                )
            )
        if done.rowcount == 1:
            return
        current = await self.get(library_quiz_id)  # NotFound if it went away
        raise FailedPrecondition(
            f"quiz {library_quiz_id} was saved meanwhile (it is at version {current.version}, "
            f"this edit started from {expected_version}); load it again and redo the change",
            Reason.ERROR_REASON_QUIZ_CHANGED,
        )

    async def delete(self, library_quiz_id: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                delete(library_quizzes).where(library_quizzes.c.id == library_quiz_id)
            )

    async def games_played(self, ids: list[str]) -> dict[str, int]:
        """How many games were made from each of these library quizzes."""
        if not ids:
            return {}
        query = (
            select(quizzes.c.library_quiz_id, func.count())
            .where(quizzes.c.library_quiz_id.in_(ids))
            .group_by(quizzes.c.library_quiz_id)
        )
        async with self.engine.connect() as conn:
            return {str(r[0]): int(r[1]) for r in await conn.execute(query)}
