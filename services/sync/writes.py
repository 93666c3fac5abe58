"""One batch of the sync job into SQL, inside the caller's transaction: the answers
(kept if already there), the totals of the players they touch (each the sum of that
player's durable answers, with the time the last points came) and the checkpoint
(only ever moved forward). The sync job is the only writer of `answers`, `scores`
and `sync_checkpoints`.

A total is never taken from the running total a record carries: that one counts
whatever Redis had applied, an answer that never became durable included.

On MySQL/MariaDB answers and totals go in as multi-row statements rendered here
(services/database/literals.py says why); SQLite takes the same meaning spelled
with SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Executable, Select, func, select
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from services.database.literals import Quote, execute_rendered, mysql_quoting
from services.database.tables import answers, scores, sync_checkpoints

# quiz_id, question_idx, player_id, choice, correct, points, answered_ms
AnswerRow = tuple[str, int, str, int, bool, int, int]
ANSWER_COLUMNS = (
    "quiz_id",
    "question_idx",
    "player_id",
    "choice",
    "correct",
    "points",
    "answered_ms",
)
# (quiz_id, player_id) whose total a batch changes.
Scorer = tuple[str, str]
# Rows per statement: well inside MySQL's default max_allowed_packet (16-64 MB).
ROWS_PER_STATEMENT = 20_000


async def write_batch(
    conn: AsyncConnection,
    answer_rows: Sequence[AnswerRow],
    scorers: Sequence[Scorer],
    checkpoint: str,
    seq: int,
    now: int,
) -> None:
    quote = await mysql_quoting(conn)
    if quote is None:
        await _sqlite_answers(conn, answer_rows)
    else:
        for part in _chunks(answer_rows):
            await execute_rendered(conn, answers_statement(part, quote))
    await sum_scores(conn, scorers)
    await advance_checkpoint(conn, checkpoint, seq, now)


async def sum_scores(conn: AsyncConnection, scorers: Sequence[Scorer]) -> None:
    """Each scorer's total as the sum of their answers in SQL, reached when their
    last points came: one statement per quiz, on ix_answers_player. Idempotent, so
    replayed records or two jobs at once leave the same totals."""
    by_quiz: dict[str, list[str]] = {}
    for quiz_id, player_id in scorers:
        by_quiz.setdefault(quiz_id, []).append(player_id)
    for quiz_id, player_ids in by_quiz.items():
        for start in range(0, len(player_ids), ROWS_PER_STATEMENT):
            summed = (
                select(
                    answers.c.quiz_id,
                    answers.c.player_id,
                    func.sum(answers.c.points),
                    func.max(answers.c.answered_ms),
                )
                .where(
                    answers.c.quiz_id == quiz_id,
                    answers.c.player_id.in_(player_ids[start : start + ROWS_PER_STATEMENT]),
                    answers.c.points > 0,
                )
                .group_by(answers.c.quiz_id, answers.c.player_id)
            )
            await conn.execute(_upsert_totals(conn, summed))


def _upsert_totals(conn: AsyncConnection, summed: Select[Any]) -> Executable:
    columns = ["quiz_id", "player_id", "score", "reached_ms"]
    if conn.dialect.name == "mysql":
        m = mysql.insert(scores).from_select(columns, summed)
        return m.on_duplicate_key_update(score=m.inserted.score, reached_ms=m.inserted.reached_ms)
    s = sqlite.insert(scores).from_select(columns, summed)
    return s.on_conflict_do_update(
        index_elements=[scores.c.quiz_id, scores.c.player_id],
        set_={"score": s.excluded.score, "reached_ms": s.excluded.reached_ms},
    )


def answers_statement(rows: Sequence[AnswerRow], quote: Quote) -> str:
    """INSERT IGNORE: an answer never changes once accepted."""
    values = ",".join(
        f"({quote(q)},{i:d},{quote(p)},{c:d},{ok:d},{pts:d},{ms:d})"
        for q, i, p, c, ok, pts, ms in rows
    )
    return f"INSERT IGNORE INTO {answers.name} ({', '.join(ANSWER_COLUMNS)}) VALUES {values}"


async def _sqlite_answers(conn: AsyncConnection, rows: Sequence[AnswerRow]) -> None:
    if rows:
        await conn.execute(
            sqlite.insert(answers).on_conflict_do_nothing(),
            [dict(zip(ANSWER_COLUMNS, r, strict=True)) for r in rows],
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


def _chunks(rows: Sequence[Any]) -> list[Sequence[Any]]:
    return [rows[i : i + ROWS_PER_STATEMENT] for i in range(0, len(rows), ROWS_PER_STATEMENT)]
