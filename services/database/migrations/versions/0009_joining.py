"""Joining under the host's control: late joining allowed per quiz, and a lobby the
host can lock. Existing quizzes: neither.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("quizzes") as batch:
        batch.add_column(
            sa.Column("allow_late_join", sa.Boolean, nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("lobby_locked", sa.Boolean, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("quizzes") as batch:
        batch.drop_column("lobby_locked")
        batch.drop_column("allow_late_join")
