"""The sync job: copies accepted answers from JetStream into SQL, then marks closed
quizzes final and lets their Redis state expire.

JetStream holds every accepted answer in order. The job reads from its checkpoint
(the last stream sequence it committed), writes each batch of answers and the
players' raised totals with the new checkpoint in ONE transaction, and so:
- costs what changed since the last run, whatever the size of a quiz;
- is exact when killed half-way (the batch rolls back, the checkpoint with it);
- is safe twice at once (inserts of answers are ignored when present, totals only
  go up, the checkpoint only forward).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from quizmesh.common.v1 import events_pb2
from redis.asyncio import Redis
from sqlalchemy import and_, exists, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.core import messaging
from services.core.board import QuizKeys
from services.core.clock import now_ms
from services.database.engine import create_engine
from services.database.tables import players, quizzes, scores, sync_checkpoints
from services.database.upserts import advance_checkpoint, insert_answers, raise_scores
from services.sync.config import Settings

log = logging.getLogger(__name__)


@dataclass
class SyncReport:
    answers: int = 0
    batches: int = 0
    checkpoint: int = 0
    quizzes_finalized: int = 0


def _rows(
    batch: list[events_pb2.AcceptedAnswer],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Answer rows, and per player the highest total in the batch with its time."""
    answer_rows = []
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for a in batch:
        answered = a.answered_at.ToMilliseconds()
        answer_rows.append(
            {
                "quiz_id": a.quiz_id,
                "question_idx": a.question_index,
                "player_id": a.player_id,
                "choice": a.choice_index,
                "correct": a.correct,
                "points": a.points_awarded,
                "answered_ms": answered,
            }
        )
        if a.points_awarded <= 0:
            continue  # a wrong answer does not change when the total was reached
        key = (a.quiz_id, a.player_id)
        if key not in best or best[key]["score"] < a.total_score:
            best[key] = {
                "quiz_id": a.quiz_id,
                "player_id": a.player_id,
                "score": a.total_score,
                "reached_ms": answered,
            }
    return answer_rows, list(best.values())


class SyncJob:
    def __init__(
        self,
        engine: AsyncEngine,
        js: JetStreamContext,
        redis: Redis,
        settings: Settings,
    ) -> None:
        self.engine = engine
        self.js = js
        self.redis = redis
        self.settings = settings
        self.subjects = messaging.Subjects(settings.nats_prefix)

    async def checkpoint(self) -> int:
        async with self.engine.connect() as conn:
            seq = await conn.scalar(
                select(sync_checkpoints.c.stream_seq).where(
                    sync_checkpoints.c.name == self.subjects.answers_stream
                )
            )
        return int(seq or 0)

    async def copy_answers(self, report: SyncReport) -> None:
        start = await self.checkpoint()
        report.checkpoint = start
        batch: list[events_pb2.AcceptedAnswer] = []
        last = start
        records = messaging.replay(
            self.js, self.subjects.answers_stream, self.subjects.all("answers"), start
        )
        async with contextlib.aclosing(records):
            async for msg in records:
                batch.append(events_pb2.AcceptedAnswer.FromString(msg.data))
                last = msg.metadata.sequence.stream
                if len(batch) >= self.settings.sync_batch_size:
                    await self._commit(batch, last, report)
                    batch = []
        if batch or last > start:
            await self._commit(batch, last, report)

    async def _commit(
        self, batch: list[events_pb2.AcceptedAnswer], last: int, report: SyncReport
    ) -> None:
        answer_rows, score_rows = _rows(batch)
        async with self.engine.begin() as conn:
            await insert_answers(conn, answer_rows)
            await raise_scores(conn, score_rows)
            await advance_checkpoint(conn, self.subjects.answers_stream, last, now_ms())
        report.answers += len(batch)
        report.batches += 1
        report.checkpoint = last

    async def finalize_closed(self, report: SyncReport) -> None:
        """A closed quiz whose every answer is in SQL gets its final leaderboard: a
        row per player (0 for those who never scored) and `board_final`."""
        grace_ms = int(self.settings.sync_final_grace_seconds * 1000)
        async with self.engine.connect() as conn:
            due = list(
                await conn.scalars(
                    select(quizzes.c.id).where(
                        quizzes.c.state == "CLOSED",
                        quizzes.c.board_final.is_(False),
                        quizzes.c.closed_ms <= now_ms() - grace_ms,
                    )
                )
            )
        checkpoint = report.checkpoint
        for quiz_id in due:
            last = await self._last_answer_seq(quiz_id)
            if last > checkpoint:
                continue  # answers still to copy; a later run finishes it
            async with self.engine.begin() as conn:
                await conn.execute(
                    insert(scores).from_select(
                        ["quiz_id", "player_id", "score", "reached_ms"],
                        select(
                            players.c.quiz_id, players.c.id, literal(0), players.c.joined_ms
                        ).where(
                            players.c.quiz_id == quiz_id,
                            ~exists().where(
                                and_(
                                    scores.c.quiz_id == quiz_id, scores.c.player_id == players.c.id
                                )
                            ),
                        ),
                    )
                )
                await conn.execute(
                    update(quizzes).where(quizzes.c.id == quiz_id).values(board_final=True)
                )
            keys = QuizKeys(self.settings.key_prefix, quiz_id)
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in keys.all():
                    pipe.expire(key, self.settings.sync_closed_ttl_seconds)
                await pipe.execute()
            report.quizzes_finalized += 1
            log.info("quiz final in SQL", extra={"quiz_id": quiz_id})

    async def _last_answer_seq(self, quiz_id: str) -> int:
        try:
            msg = await self.js.get_last_msg(
                self.subjects.answers_stream, self.subjects.answers(quiz_id)
            )
        except NotFoundError:
            return 0
        return int(msg.seq or 0)

    async def run(self) -> SyncReport:
        report = SyncReport()
        await self.copy_answers(report)
        await self.finalize_closed(report)
        return report


async def run_sync(settings: Settings) -> SyncReport:
    """One run of the job with its own connections (what the CronJob runs)."""
    engine = create_engine(settings.database_url)
    redis = Redis.from_url(settings.redis_url, decode_responses=True)
    nc: NatsClient | None = None
    try:
        nc = await messaging.connect(settings.nats_url, name="sync", reconnect=False)
        js = nc.jetstream()
        await messaging.ensure_streams(js, messaging.Subjects(settings.nats_prefix))
        return await SyncJob(engine, js, redis, settings).run()
    finally:
        if nc is not None:
            await nc.close()
        await redis.aclose()
        await engine.dispose()
