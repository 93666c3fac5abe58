"""When each question opened, for reports (time taken per answer; questions of
games played before: unknown, NULL), and an index for a host's history of games.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("questions") as batch:
        batch.add_column(sa.Column("opened_ms", sa.BigInteger))
    op.create_index(op.f("ix_quizzes_host_created_ms"), "quizzes", ["host", "created_ms"])


def downgrade() -> None:
    op.drop_index(op.f("ix_quizzes_host_created_ms"), table_name="quizzes")
    with op.batch_alter_table("questions") as batch:
        batch.drop_column("opened_ms")
