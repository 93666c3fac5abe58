"""Answers by player: the sync job sums each player's durable answers into their
total (scores), so it reads a player's answers, at most one per question.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_answers_player", "answers", ["quiz_id", "player_id"])


def downgrade() -> None:
    op.drop_index("ix_answers_player", table_name="answers")
