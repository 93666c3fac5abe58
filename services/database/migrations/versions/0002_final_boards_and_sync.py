"""Final boards, a ranking index on scores, and the sync job's checkpoints.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sync_checkpoints",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("stream_seq", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_sync_checkpoints")),
    )
    with op.batch_alter_table("quizzes") as batch_op:
        batch_op.add_column(
            sa.Column("board_final", sa.Boolean(), server_default="0", nullable=False)
        )
    with op.batch_alter_table("scores") as batch_op:
        batch_op.drop_column("is_final")
    # Outside the batch: SQLite's table copy cannot carry an index with DESC parts.
    op.create_index(
        "ix_scores_ranking",
        "scores",
        ["quiz_id", sa.text("score DESC"), "reached_ms", sa.text("player_id DESC")],
    )


def downgrade() -> None:
    op.drop_index("ix_scores_ranking", table_name="scores")
    with op.batch_alter_table("scores") as batch_op:
        batch_op.add_column(sa.Column("is_final", sa.Boolean(), server_default="0", nullable=False))
    with op.batch_alter_table("quizzes") as batch_op:
        batch_op.drop_column("board_final")
    op.drop_table("sync_checkpoints")
