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

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from nats.aio.client import Client as NatsClient
from nats.js.errors import NotFoundError
from quizmesh.common.v1 import events_pb2
from sqlalchemy import and_, exists, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.database.checkpoints import read_checkpoint
from services.database.engine import create_engine
from services.database.records import QuizState
from services.database.tables import players, quizzes, scores
from services.live.quizzes import LiveQuizzes
from services.mesh import messaging
from services.mesh.clock import now_ms
from services.mesh.connections import redis_client
from services.sync.config import Settings
from services.sync.reader import Records, read_records
from services.sync.writes import AnswerRow, Scorer, write_batch

log = logging.getLogger(__name__)

# Batches decoded and waiting while one is written: one keeps both sides busy.
READ_AHEAD = 1


@dataclass
class SyncReport:
    answers: int = 0
    batches: int = 0
    checkpoint: int = 0
    quizzes_finalized: int = 0


@dataclass(frozen=True, slots=True)
class Batch:
    """One transaction's worth: the answer rows, the players whose totals they
    change, and the checkpoint they move to."""

    answers: list[AnswerRow]
    # The players whose totals the batch changes (those with points in it).
    scorers: list[Scorer]
    last_seq: int


def decode(records: Records) -> Batch:
    answer_rows: list[AnswerRow] = []
    scorers: dict[Scorer, None] = {}
    parse = events_pb2.AcceptedAnswer.FromString
    for data in records.payloads:
        a = parse(data)
        at = a.answered_at
        answered = at.seconds * 1000 + at.nanos // 1_000_000  # Timestamp.ToMilliseconds
        quiz, player, points = a.quiz_id, a.player_id, a.points_awarded
        answer_rows.append(
            (quiz, a.question_index, player, a.choice_index, a.correct, points, answered)
        )
        if points > 0:  # a wrong answer changes neither a total nor when it was reached
            scorers[quiz, player] = None
    return Batch(answer_rows, list(scorers), records.last_seq)


@dataclass
class SyncJob:
    engine: AsyncEngine
    nc: NatsClient
    live: LiveQuizzes
    settings: Settings

    def __post_init__(self) -> None:
        self.js = self.nc.jetstream()
        self.subjects = messaging.Subjects(self.settings.nats_prefix)

    async def checkpoint(self) -> int:
        return (await read_checkpoint(self.engine, self.subjects.answers_stream)).stream_seq

    async def copy_answers(self, report: SyncReport) -> None:
        """Batches are read and decoded one ahead of the one being written, so JetStream
        and the database work at the same time; they commit one by one, in order."""
        start = await self.checkpoint()
        report.checkpoint = start
        ready: asyncio.Queue[Batch | Exception | None] = asyncio.Queue(maxsize=READ_AHEAD)
        reader = asyncio.create_task(self._read(start, ready))
        try:
            while (batch := await ready.get()) is not None:
                if isinstance(batch, Exception):
                    raise batch  # as it was raised, so `main` names the failing dependency
                await self._commit(batch, report)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _read(self, start: int, ready: asyncio.Queue[Batch | Exception | None]) -> None:
        try:
            records = read_records(
                self.nc,
                self.js,
                self.subjects.answers_stream,
                self.subjects.all("answers"),
                start,
                self.settings.sync_batch_size,
            )
            async with contextlib.aclosing(records):
                async for part in records:
                    await ready.put(decode(part))
        except Exception as e:
            await ready.put(e)
        else:
            await ready.put(None)

    async def _commit(self, batch: Batch, report: SyncReport) -> None:
        async with self.engine.begin() as conn:
            await write_batch(
                conn,
                batch.answers,
                batch.scorers,
                self.subjects.answers_stream,
                batch.last_seq,
                now_ms(),
            )
        report.answers += len(batch.answers)
        report.batches += 1
        report.checkpoint = batch.last_seq

    async def finalize_closed(self, report: SyncReport) -> None:
        """A closed quiz whose every answer is in SQL gets its final leaderboard: a
        row per player (0 for those who never scored) and `board_final`."""
        grace_ms = int(self.settings.sync_final_grace_seconds * 1000)
        async with self.engine.connect() as conn:
            due = list(
                await conn.scalars(
                    select(quizzes.c.id).where(
                        quizzes.c.state == QuizState.CLOSED,
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
            await self.live.expire(quiz_id, self.settings.sync_closed_ttl_seconds)
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
    redis = redis_client(settings.redis_url, decode_responses=True)
    nc: NatsClient | None = None
    try:
        nc = await messaging.connect(settings.nats_url, name="sync", reconnect=False)
        await messaging.ensure_streams(
            nc.jetstream(),
            messaging.Subjects(settings.nats_prefix),
            settings.nats_stream_replicas,
        )
        live = LiveQuizzes(redis, settings.key_prefix)
        return await SyncJob(engine, nc, live, settings).run()
    finally:
        if nc is not None:
            await nc.close()
        await redis.aclose()
        await engine.dispose()
