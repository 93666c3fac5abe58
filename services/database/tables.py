"""The system of record: quizzes, questions, players, answers and scores.

SQLAlchemy Core tables, the same code on MySQL/MariaDB and on SQLite. Times are
integer milliseconds since the epoch (UTC), exactly as Redis holds them.
"""

from __future__ import annotations

import unicodedata

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

quizzes = Table(
    "quizzes",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("title", String(200), nullable=False),
    Column("host", String(128), nullable=False),
    Column("state", String(16), nullable=False),  # OPEN, RUNNING, CLOSED
    Column("question_count", Integer, nullable=False),
    Column("current_question", Integer, nullable=False, default=-1),
    Column("question_opened_ms", BigInteger),
    Column("question_deadline_ms", BigInteger),
    # Set once a question's close was announced, so the deadline sweep skips it.
    Column("closed_question", Integer, nullable=False, default=-1),
    Column("close_reason", Integer, nullable=False, default=0),
    Column("created_ms", BigInteger, nullable=False),
    Column("started_ms", BigInteger),
    Column("closed_ms", BigInteger),
    # Set by the sync job once every accepted answer of a closed quiz is in SQL:
    # from then on its leaderboard may be served from here and Redis may expire.
    Column("board_final", Boolean, nullable=False, default=False, server_default="0"),
    # When the last host transition (start, advance, close) committed, until its
    # announcement on JetStream succeeded: the deadline sweep announces it should
    # the replica die or NATS fail in between.
    Column("unannounced_ms", BigInteger),
    # Results and the board move as answers arrive instead of when a question closes.
    Column("instant_feedback", Boolean, nullable=False, default=False, server_default="0"),
    # The library quiz this game was made from (no foreign key: deleting a library
    # quiz leaves its games as they are); NULL for a quiz created directly.
    Column("library_quiz_id", String(16)),
    # Players may join while it runs; the host has locked the lobby (nobody joins).
    Column("allow_late_join", Boolean, nullable=False, default=False, server_default="0"),
    Column("lobby_locked", Boolean, nullable=False, default=False, server_default="0"),
    Index(None, "state", "question_deadline_ms"),
    Index(None, "unannounced_ms"),
    Index(None, "created_ms"),
    Index(None, "host", "created_ms"),  # a host's history (ListQuizzes mine)
    Index(None, "library_quiz_id"),
)

questions = Table(
    "questions",
    metadata,
    Column("quiz_id", String(16), ForeignKey("quizzes.id"), primary_key=True),
    Column("idx", Integer, primary_key=True, autoincrement=False),
    Column("text", Text, nullable=False),
    Column("choices", Text, nullable=False),  # JSON array of strings
    Column("correct_choice", Integer, nullable=False),
    Column("points", Integer, nullable=False),
    Column("time_limit_ms", Integer, nullable=False),
    # When it opened (ms), for the report's time taken; NULL until then, and for
    # questions of games played before it was kept.
    Column("opened_ms", BigInteger),
)

# Compared byte for byte: uniqueness is what `nickname_key` says, on every database
# (MariaDB's default collation would also fold accents; SQLite's folds nothing).
NICKNAME_KEY = String(192).with_variant(mysql.VARCHAR(192, collation="utf8mb4_bin"), "mysql")


def nickname_key(nickname: str) -> str:
    """What makes two nicknames the same: compatibility forms and case ("ANN",
    "ann", its full-width letters), not accents ("José" and "Jose" are two people).
    Case folding can triple a string's length, hence the column's 192."""
    return unicodedata.normalize("NFKC", nickname).casefold()


players = Table(
    "players",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("quiz_id", String(16), ForeignKey("quizzes.id"), nullable=False),
    Column("nickname", String(64), nullable=False),
    Column("nickname_key", NICKNAME_KEY, nullable=False),
    Column("joined_ms", BigInteger, nullable=False),
    UniqueConstraint("quiz_id", "nickname_key"),
)

answers = Table(
    "answers",
    metadata,
    Column("quiz_id", String(16), primary_key=True),
    Column("question_idx", Integer, primary_key=True, autoincrement=False),
    Column("player_id", String(32), primary_key=True),
    Column("choice", Integer, nullable=False),
    Column("correct", Boolean, nullable=False),
    Column("points", Integer, nullable=False),
    Column("answered_ms", BigInteger, nullable=False),
)
# A player's answers, which the sync job sums into their total.
Index("ix_answers_player", answers.c.quiz_id, answers.c.player_id)

# A player's total and when they reached it: the ranking key, as in Redis. The sync
# job writes it as the sum of the player's durable answers (the `answers` rows),
# never from a total a record carries.
scores = Table(
    "scores",
    metadata,
    Column("quiz_id", String(16), primary_key=True),
    Column("player_id", String(32), primary_key=True),
    Column("score", Integer, nullable=False),
    Column("reached_ms", BigInteger, nullable=False),
)
# Same order as the Redis board: score desc, earlier first, then member desc (the
# final board and reports read it so).
BOARD_ORDER = (scores.c.score.desc(), scores.c.reached_ms.asc(), scores.c.player_id.desc())
Index(
    "ix_scores_ranking",
    scores.c.quiz_id,
    scores.c.score.desc(),
    scores.c.reached_ms,
    scores.c.player_id.desc(),
)

# How far the sync job has copied each JetStream stream (its last stream sequence).
sync_checkpoints = Table(
    "sync_checkpoints",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("stream_seq", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)

# Host accounts (issue 15). `email` is stored lower-cased, so the unique key is
# the sign-in name whatever the case it is typed in; `password_hash` is Argon2id's
# own encoding (its parameters and salt included).
hosts = Table(
    "hosts",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("email", String(254), nullable=False, unique=True),
    Column("display_name", String(64), nullable=False),
    Column("password_hash", String(255), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
)

# One row per refresh token: only its SHA-256 is kept. Refreshing marks the row
# used and adds the next one in the same `family` (the session); a used token shown
# again revokes the family.
host_sessions = Table(
    "host_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("family", String(32), nullable=False, index=True),
    Column("host_id", String(16), ForeignKey("hosts.id"), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    Column("used_ms", BigInteger),
    Column("revoked_ms", BigInteger),
)

# A host's quiz library (issue 15): content kept and played any number of times.
# `content` is the quiz as the host wrote it, JSON (title aside): its questions and
# settings; each game copies it into its own `questions` rows when it is made.
library_quizzes = Table(
    "library_quizzes",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("host", String(128), nullable=False),
    Column("title", String(200), nullable=False),
    Column("content", Text, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)
# A host's library, most recently changed first (ListLibraryQuizzes' order).
Index(
    "ix_library_quizzes_host_updated",
    library_quizzes.c.host,
    library_quizzes.c.updated_ms.desc(),
    library_quizzes.c.id,
)
