"""One batch of the sync job into SQL, inside the caller's transaction: the answers
(kept if already there), the players' totals (only ever raised, with the time they
were reached) and the checkpoint (only ever moved forward). The sync job is the
only writer of `answers`, `scores` and `sync_checkpoints`.

On MySQL/MariaDB answers and totals go in as multi-row statements rendered here
(services/database/literals.py says why); SQLite takes the same meaning spelled
with SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import case, func
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
# quiz_id, player_id, score, reached_ms
ScoreRow = tuple[str, str, int, int]
SCORE_COLUMNS = ("quiz_id", "player_id", "score", "reached_ms")
# Rows per statement: well inside MySQL's default max_allowed_packet (16-64 MB).
ROWS_PER_STATEMENT = 20_000


async def write_batch(
    conn: AsyncConnection,
    answer_rows: Sequence[AnswerRow],
    score_rows: Sequence[ScoreRow],
    checkpoint: str,
    seq: int,
    now: int,
) -> None:
    quote = await mysql_quoting(conn)
    if quote is None:
        await _sqlite_answers(conn, answer_rows)
        await _sqlite_scores(conn, score_rows)
    else:
        for part in _chunks(answer_rows):
            await execute_rendered(conn, answers_statement(part, quote))
        upsert = scores_statement_alias if _needs_alias(conn) else scores_statement
        for part in _chunks(score_rows):
            await execute_rendered(conn, upsert(part, quote))
    await advance_checkpoint(conn, checkpoint, seq, now)


def answers_statement(rows: Sequence[AnswerRow], quote: Quote) -> str:
    """INSERT IGNORE: an answer never changes once accepted."""
    values = ",".join(
        f"({quote(q)},{i:d},{quote(p)},{c:d},{ok:d},{pts:d},{ms:d})"
        for q, i, p, c, ok, pts, ms in rows
    )
    return f"INSERT IGNORE INTO {answers.name} ({', '.join(ANSWER_COLUMNS)}) VALUES {values}"


def _score_values(rows: Sequence[ScoreRow], quote: Quote) -> str:
    return ",".join(f"({quote(q)},{quote(p)},{s:d},{ms:d})" for q, p, s, ms in rows)


def scores_statement(rows: Sequence[ScoreRow], quote: Quote) -> str:
    """A total only rises, so replaying old records (or two jobs at once) never moves
    a score back. MySQL applies the assignments in order, so reached_ms compares the
    old score (MariaDB, MySQL before 8.0.20: VALUES())."""
    return (
        f"INSERT INTO {scores.name} ({', '.join(SCORE_COLUMNS)}) "
        f"VALUES {_score_values(rows, quote)} ON DUPLICATE KEY UPDATE "
        "reached_ms = IF(VALUES(score) > score, VALUES(reached_ms), reached_ms), "
        "score = GREATEST(score, VALUES(score))"
    )


def scores_statement_alias(rows: Sequence[ScoreRow], quote: Quote) -> str:
    """The same for MySQL 8.0.20+, where VALUES() is deprecated for a row alias."""
    table = scores.name
    return (
        f"INSERT INTO {table} ({', '.join(SCORE_COLUMNS)}) "
        f"VALUES {_score_values(rows, quote)} AS new ON DUPLICATE KEY UPDATE "
        f"reached_ms = IF(new.score > {table}.score, new.reached_ms, {table}.reached_ms), "
        f"score = GREATEST({table}.score, new.score)"
    )


async def _sqlite_answers(conn: AsyncConnection, rows: Sequence[AnswerRow]) -> None:
    if rows:
        await conn.execute(
            sqlite.insert(answers).on_conflict_do_nothing(),
            [dict(zip(ANSWER_COLUMNS, r, strict=True)) for r in rows],
        )


async def _sqlite_scores(conn: AsyncConnection, rows: Sequence[ScoreRow]) -> None:
    if not rows:
        return
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
        [dict(zip(SCORE_COLUMNS, r, strict=True)) for r in rows],
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


def _needs_alias(conn: AsyncConnection) -> bool:
    dialect: Any = conn.dialect
    return not dialect.is_mariadb and tuple(dialect.server_version_info or ()) >= (8, 0, 20)


def _chunks(rows: Sequence[Any]) -> list[Sequence[Any]]:
    return [rows[i : i + ROWS_PER_STATEMENT] for i in range(0, len(rows), ROWS_PER_STATEMENT)]
