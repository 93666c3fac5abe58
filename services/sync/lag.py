"""How far SQL is behind JetStream, as metrics a service exports between sync runs
(the sync job itself is a short-lived command with nothing to scrape)."""

from __future__ import annotations

import asyncio
import logging

from nats.js import JetStreamContext
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.database.tables import sync_checkpoints
from services.mesh.clock import now_ms
from services.mesh.messaging import Subjects
from services.mesh.metrics import Metrics

log = logging.getLogger(__name__)


async def report_sync_lag(
    engine: AsyncEngine, js: JetStreamContext, subjects: Subjects, metrics: Metrics, every: float
) -> None:
    behind = metrics.gauge(
        "quizmesh_sync_lag_answers", "Accepted answers in JetStream not yet copied to SQL"
    )
    age = metrics.gauge(
        "quizmesh_sync_checkpoint_age_seconds", "Time since the sync job last committed"
    )
    while True:
        try:
            info = await js.stream_info(subjects.answers_stream)
            async with engine.connect() as conn:
                row = (
                    await conn.execute(
                        select(sync_checkpoints.c.stream_seq, sync_checkpoints.c.updated_ms).where(
                            sync_checkpoints.c.name == subjects.answers_stream
                        )
                    )
                ).first()
            copied, updated = (row[0], row[1]) if row else (0, None)
            behind.set(max(0, (info.state.last_seq or 0) - copied))
            if updated is not None:
                age.set((now_ms() - updated) / 1000)
        except Exception as e:
            log.warning("sync lag not measured", extra={"error": repr(e)})
        await asyncio.sleep(every)
