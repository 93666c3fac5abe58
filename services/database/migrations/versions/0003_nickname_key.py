"""Nicknames unique by a key of their own (case and compatibility forms folded,
compared byte for byte), so that MariaDB and SQLite agree on who is a duplicate.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import unicodedata

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

KEY = sa.String(192).with_variant(mysql.VARCHAR(192, collation="utf8mb4_bin"), "mysql")
BATCH = 5_000


def key_of(nickname: str) -> str:
    # As services.database.tables.nickname_key when this revision was written; a
    # migration keeps its own copy so that it means the same thing for ever.
    return unicodedata.normalize("NFKC", nickname).casefold()


def upgrade() -> None:
    with op.batch_alter_table("players") as batch_op:
        batch_op.add_column(sa.Column("nickname_key", KEY, nullable=True))
    players = sa.table(
        "players",
        sa.column("id", sa.String),
        sa.column("quiz_id", sa.String),
        sa.column("nickname", sa.String),
        sa.column("nickname_key", sa.String),
    )
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(players.c.id, players.c.quiz_id, players.c.nickname).order_by(
            players.c.quiz_id, players.c.id
        )
    ).all()
    # Names that were distinct before but share a key now (only possible where the
    # old collation was exact, i.e. SQLite) keep a key of their own: players who
    # have joined keep their names.
    seen: set[tuple[str, str]] = set()
    updates = []
    for player_id, quiz_id, nickname in rows:
        key = key_of(nickname)
        if (quiz_id, key) in seen:
            key = f"{key}#{player_id}"
        seen.add((quiz_id, key))
        updates.append({"pid": player_id, "key": key})
    statement = (
        players.update()
        .where(players.c.id == sa.bindparam("pid"))
        .values(nickname_key=sa.bindparam("key"))
    )
    for start in range(0, len(updates), BATCH):
        connection.execute(statement, updates[start : start + BATCH])
    with op.batch_alter_table("players") as batch_op:
        batch_op.alter_column("nickname_key", existing_type=KEY, nullable=False)
        # New before old: on MariaDB the foreign key on quiz_id needs an index
        # that starts with quiz_id, and the old constraint's is the only one.
        batch_op.create_unique_constraint(
            "uq_players_quiz_id_nickname_key", ["quiz_id", "nickname_key"]
        )
        batch_op.drop_constraint("uq_players_quiz_id_nickname", type_="unique")


def downgrade() -> None:
    with op.batch_alter_table("players") as batch_op:
        batch_op.create_unique_constraint("uq_players_quiz_id_nickname", ["quiz_id", "nickname"])
        batch_op.drop_constraint("uq_players_quiz_id_nickname_key", type_="unique")
        batch_op.drop_column("nickname_key")
