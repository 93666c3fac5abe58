"""How far SQL is behind JetStream, as metrics a service exports between sync runs
(the sync job itself is a short-lived command with nothing to scrape)."""

from __future__ import annotations

import asyncio
import logging

from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine

from services.database.checkpoints import read_checkpoint
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
            copied = await read_checkpoint(engine, subjects.answers_stream)
            behind.set(max(0, (info.state.last_seq or 0) - copied.stream_seq))
            if copied.updated_ms is not None:
                age.set((now_ms() - copied.updated_ms) / 1000)
        except Exception as e:
            log.warning("sync lag not measured", extra={"error": repr(e)})
        await asyncio.sleep(every)
