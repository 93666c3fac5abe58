"""How far the sync job has copied each JetStream stream into SQL (its last stream
sequence and when it committed it); written by the sync job alone."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.database.tables import sync_checkpoints


@dataclass(frozen=True, slots=True)
class Checkpoint:
    stream_seq: int
    updated_ms: int | None


async def read_checkpoint(engine: AsyncEngine, name: str) -> Checkpoint:
    """Where the copy of stream `name` stands (0, None before the first run)."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(sync_checkpoints.c.stream_seq, sync_checkpoints.c.updated_ms).where(
                    sync_checkpoints.c.name == name
                )
            )
        ).first()
    return Checkpoint(int(row[0]), int(row[1])) if row else Checkpoint(0, None)
