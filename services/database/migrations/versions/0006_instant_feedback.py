"""Instant feedback: a quiz either tells each answer's result at once (a practice
quiz) or, by default, when the question closes. Quizzes made before this told
results at once, so they keep doing so.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "quizzes",
        sa.Column("instant_feedback", sa.Boolean, nullable=False, server_default="0"),
    )
    op.execute("UPDATE quizzes SET instant_feedback = 1")


def downgrade() -> None:
    with op.batch_alter_table("quizzes") as batch:
        batch.drop_column("instant_feedback")
