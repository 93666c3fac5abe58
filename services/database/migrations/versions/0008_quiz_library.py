"""The quiz library: quizzes kept apart from their games. Each existing quiz becomes
a library quiz of its host (its title, questions and settings) plus its one game,
the quiz row as it was, linked to it by `library_quiz_id`.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import json
import secrets

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

QUIZZES = sa.table(
    "quizzes",
    sa.column("id"),
    sa.column("title"),
    sa.column("host"),
    sa.column("created_ms"),
    sa.column("instant_feedback"),
    sa.column("library_quiz_id"),
)
QUESTIONS = sa.table(
    "questions",
    sa.column("quiz_id"),
    sa.column("idx"),
    sa.column("text"),
    sa.column("choices"),
    sa.column("correct_choice"),
    sa.column("points"),
    sa.column("time_limit_ms"),
)
LIBRARY = sa.table(
    "library_quizzes",
    sa.column("id"),
    sa.column("host"),
    sa.column("title"),
    sa.column("content"),
    sa.column("version"),
    sa.column("created_ms"),
    sa.column("updated_ms"),
)


def upgrade() -> None:
    op.create_table(
        "library_quizzes",
        sa.Column("id", sa.String(16), nullable=False),
        sa.Column("host", sa.String(128), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_library_quizzes")),
    )
    # Outside a batch: SQLite's table copy cannot carry an index with DESC parts.
    op.create_index(
        "ix_library_quizzes_host_updated",
        "library_quizzes",
        ["host", sa.text("updated_ms DESC"), "id"],
    )
    with op.batch_alter_table("quizzes") as batch:
        batch.add_column(sa.Column("library_quiz_id", sa.String(16)))
        batch.create_index(op.f("ix_quizzes_library_quiz_id"), ["library_quiz_id"])
    _each_quiz_into_the_library()


def _each_quiz_into_the_library() -> None:
    conn = op.get_bind()
    quizzes = conn.execute(
        sa.select(
            QUIZZES.c.id,
            QUIZZES.c.title,
            QUIZZES.c.host,
            QUIZZES.c.created_ms,
            QUIZZES.c.instant_feedback,
        )
    ).all()
    for quiz in quizzes:
        rows = conn.execute(
            sa.select(QUESTIONS).where(QUESTIONS.c.quiz_id == quiz.id).order_by(QUESTIONS.c.idx)
        ).all()
        # The stored points and time limits are the values the game used: kept
        # explicitly, so the library quiz plays exactly as this game did.
        content = {
            "questions": [
                {
                    "text": q.text,
                    "choices": json.loads(q.choices),
                    "correct_choice": q.correct_choice,
                    "points": q.points,
                    "time_limit_ms": q.time_limit_ms,
                }
                for q in rows
            ],
            "instant_feedback": bool(quiz.instant_feedback),
        }
        library_id = secrets.token_hex(8)
        conn.execute(
            sa.insert(LIBRARY).values(
                id=library_id,
                host=quiz.host,
                title=quiz.title,
                content=json.dumps(content),
                version=1,
                created_ms=quiz.created_ms,
                updated_ms=quiz.created_ms,
            )
        )
        conn.execute(
            sa.update(QUIZZES).where(QUIZZES.c.id == quiz.id).values(library_quiz_id=library_id)
        )


def downgrade() -> None:
    with op.batch_alter_table("quizzes") as batch:
        batch.drop_index(op.f("ix_quizzes_library_quiz_id"))
        batch.drop_column("library_quiz_id")
    op.drop_index("ix_library_quizzes_host_updated", table_name="library_quizzes")
    op.drop_table("library_quizzes")
