"""One batch of the sync job into SQL, inside the caller's transaction: the answers
(kept if already there), the players' totals (only ever raised, with the time they
were reached) and the checkpoint (only ever moved forward).

On MySQL/MariaDB the answers and totals go in as multi-row statements rendered here.
Through an executemany, aiomysql escapes every value in Python, which was most of
the job's SQL cost; here ids that are plain letters and digits (all the services
issue) are quoted as they are, anything else goes through the driver's own
escaping, and numbers are written by `int`. The statements mean exactly what
services/database/upserts.py spells with SQLAlchemy, which SQLite still uses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.database.tables import answers, scores
from services.database.upserts import advance_checkpoint, insert_answers, raise_scores

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

Quote = Callable[[str], str]


async def write_batch(
    conn: AsyncConnection,
    answer_rows: Sequence[AnswerRow],
    score_rows: Sequence[ScoreRow],
    checkpoint: str,
    seq: int,
    now: int,
) -> None:
    escape = await _mysql_escape(conn)
    if escape is None:
        await insert_answers(conn, [dict(zip(ANSWER_COLUMNS, r, strict=True)) for r in answer_rows])
        await raise_scores(conn, [dict(zip(SCORE_COLUMNS, r, strict=True)) for r in score_rows])
    else:
        quote = _quoting(escape)
        for part in _chunks(answer_rows):
            await _execute(conn, answers_statement(part, quote))
        upsert = scores_statement_alias if _needs_alias(conn) else scores_statement
        for part in _chunks(score_rows):
            await _execute(conn, upsert(part, quote))
    await advance_checkpoint(conn, checkpoint, seq, now)


def answers_statement(rows: Sequence[AnswerRow], quote: Quote) -> str:
    """INSERT IGNORE: an answer never changes once accepted."""
    # `:d` renders ints and bools as integers and refuses anything else.
    values = ",".join(
        f"({quote(q)},{i:d},{quote(p)},{c:d},{ok:d},{pts:d},{ms:d})"
        for q, i, p, c, ok, pts, ms in rows
    )
    return f"INSERT IGNORE INTO {answers.name} ({', '.join(ANSWER_COLUMNS)}) VALUES {values}"


def _score_values(rows: Sequence[ScoreRow], quote: Quote) -> str:
    return ",".join(f"({quote(q)},{quote(p)},{s:d},{ms:d})" for q, p, s, ms in rows)


def scores_statement(rows: Sequence[ScoreRow], quote: Quote) -> str:
    """A total only rises; MySQL applies the assignments in order, so reached_ms
    compares the old score (MariaDB, MySQL before 8.0.20: VALUES())."""
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


def _quoting(escape: Callable[[str], str]) -> Quote:
    def quote(value: str) -> str:
        return f"'{value}'" if value.isascii() and value.isalnum() else escape(value)

    return quote


async def _mysql_escape(conn: AsyncConnection) -> Callable[[str], str] | None:
    """The driver's string literal function (quotes included) on MySQL, else None."""
    if conn.dialect.name != "mysql":
        return None
    driver = (await conn.get_raw_connection()).driver_connection
    escape: Callable[[str], str] | None = getattr(driver, "escape", None)
    return escape


def _needs_alias(conn: AsyncConnection) -> bool:
    dialect: Any = conn.dialect
    return not dialect.is_mariadb and tuple(dialect.server_version_info or ()) >= (8, 0, 20)


def _chunks(rows: Sequence[Any]) -> list[Sequence[Any]]:
    return [rows[i : i + ROWS_PER_STATEMENT] for i in range(0, len(rows), ROWS_PER_STATEMENT)]


async def _execute(conn: AsyncConnection, sql: str) -> None:
    # No parameters: the driver must not read '%' in the text as a placeholder.
    await conn.exec_driver_sql(sql, execution_options={"no_parameters": True})
