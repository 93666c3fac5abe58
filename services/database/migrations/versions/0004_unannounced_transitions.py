"""A quiz row remembers a host transition until it has been announced, so that a
replica that dies (or a NATS outage) between the commit and the announcement does
not lose the event.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("quizzes") as batch_op:
        batch_op.add_column(sa.Column("unannounced_ms", sa.BigInteger(), nullable=True))
        batch_op.create_index(batch_op.f("ix_quizzes_unannounced_ms"), ["unannounced_ms"])


def downgrade() -> None:
    with op.batch_alter_table("quizzes") as batch_op:
        batch_op.drop_index(batch_op.f("ix_quizzes_unannounced_ms"))
        batch_op.drop_column("unannounced_ms")
