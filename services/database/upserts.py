"""Idempotent multi-row writes, spelled per dialect (MySQL/MariaDB and SQLite)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import case, func
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from services.database.tables import answers, scores, sync_checkpoints


async def insert_answers(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Answers never change once accepted: a row already there is kept."""
    if not rows:
        return
    # executemany: the driver batches the rows into multi-row statements.
    if conn.dialect.name == "mysql":
        await conn.execute(mysql.insert(answers).prefix_with("IGNORE"), list(rows))
    else:
        await conn.execute(sqlite.insert(answers).on_conflict_do_nothing(), list(rows))


async def raise_scores(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Totals only grow: a row keeps the higher score and the time it was reached,
    so replaying old records (or two jobs at once) never moves a score back."""
    if not rows:
        return
    if conn.dialect.name == "mysql":
        m = mysql.insert(scores)
        new = m.inserted
        # MySQL applies these in order, so reached_ms must compare the old score.
        await conn.execute(
            m.on_duplicate_key_update(
                [
                    (
                        "reached_ms",
                        case(
                            (new.score > scores.c.score, new.reached_ms), else_=scores.c.reached_ms
                        ),
                    ),
                    ("score", func.greatest(scores.c.score, new.score)),
                ]
            ),
            list(rows),
        )
    else:
        s = sqlite.insert(scores)
        new = s.excluded
        await conn.execute(
            s.on_conflict_do_update(
                index_elements=[scores.c.quiz_id, scores.c.player_id],
                set_={
                    "reached_ms": case(
                        (new.score > scores.c.score, new.reached_ms), else_=scores.c.reached_ms
                    ),
                    "score": func.max(scores.c.score, new.score),
                },
            ),
            list(rows),
        )


async def advance_checkpoint(conn: AsyncConnection, name: str, seq: int, now: int) -> None:
    """Moves a checkpoint forward, never back (two jobs may race)."""
    row = {"name": name, "stream_seq": seq, "updated_ms": now}
    if conn.dialect.name == "mysql":
        m = mysql.insert(sync_checkpoints).values(row)
        await conn.execute(
            m.on_duplicate_key_update(
                stream_seq=func.greatest(sync_checkpoints.c.stream_seq, m.inserted.stream_seq),
                updated_ms=m.inserted.updated_ms,
            )
        )
    else:
        s = sqlite.insert(sync_checkpoints).values(row)
        await conn.execute(
            s.on_conflict_do_update(
                index_elements=[sync_checkpoints.c.name],
                set_={
                    "stream_seq": func.max(sync_checkpoints.c.stream_seq, s.excluded.stream_seq),
                    "updated_ms": s.excluded.updated_ms,
                },
            )
        )
