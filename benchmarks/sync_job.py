"""Benchmark of the sync job (JetStream -> SQL): a full first sync of a quiz with
N players, then an incremental run with K changed players on that board.

    .venv/bin/python -m benchmarks.sync_job --players 100000 --changed 1000
    .venv/bin/python -m benchmarks.sync_job --players 1000000 --changed 1000

Uses the MySQL/MariaDB server at --mysql (a private database it creates and drops)
and NATS at --nats (its own stream names). The answers are published as the score
service records them (subject, payload, Nats-Msg-Id), N players get their SQL rows
first. Prints a table and one JSON line; --profile DIR also records a py-spy
profile of the job during the full sync.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from quizmesh.common.v1 import events_pb2
from redis.asyncio import Redis
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from benchmarks._stack import Space, add_server_args, py_spy, run_cleanly
from services.database.engine import create_engine
from services.database.records import Question
from services.live.quizzes import LiveQuizzes
from services.mesh import messaging
from services.mesh.clock import now_ms, timestamp
from services.quiz.store import QuizStore
from services.sync.config import Settings
from services.sync.job import SyncJob, SyncReport

# The targets of issue 7.
TARGET_FULL_ROWS_PER_S = 20_000
TARGET_INCREMENTAL_SECONDS = 1.0
# Publishes awaiting their JetStream ack at once.
PUBLISH_WINDOW = 5_000


async def publish_answers(
    nc: NatsClient,
    subjects: messaging.Subjects,
    quiz_id: str,
    question: int,
    player_ids: list[str],
    start_ms: int,
) -> None:
    """Accepted answers as the score service records them. Published with core NATS
    and a reply subject per message, so JetStream stores and acknowledges each one
    exactly as for `js.publish`, but thousands are in flight instead of one per
    awaited future: setting up a million answers takes seconds, not minutes."""
    inbox = nc.new_inbox()
    acked = 0
    expected = 0
    window_done = asyncio.Event()
    failures: list[bytes] = []

    async def on_ack(msg: Msg) -> None:
        nonlocal acked
        if b'"error"' in msg.data:
            failures.append(msg.data)
        acked += 1
        if acked >= expected:
            window_done.set()

    sub = await nc.subscribe(f"{inbox}.*", cb=on_ack, pending_msgs_limit=2 * PUBLISH_WINDOW)
    subject = subjects.answers(quiz_id)
    try:
        for first in range(0, len(player_ids), PUBLISH_WINDOW):
            part = player_ids[first : first + PUBLISH_WINDOW]
            expected += len(part)
            window_done.clear()
            for n, pid in enumerate(part, start=first):
                record = events_pb2.AcceptedAnswer(
                    quiz_id=quiz_id,
                    question_index=question,
                    player_id=pid,
                    choice_index=1,
                    correct=True,
                    points_awarded=500 + n % 500,
                    total_score=(question + 1) * 1000 + n % 500,
                    answered_at=timestamp(start_ms + n),
                )
                await nc.publish(
                    subject,
                    record.SerializeToString(),
                    reply=f"{inbox}.{n}",
                    headers={"Nats-Msg-Id": f"{quiz_id}:{question}:{pid}"},
                )
            await asyncio.wait_for(window_done.wait(), 60)
            if failures:
                raise RuntimeError(f"JetStream refused answers: {failures[0]!r}")
    finally:
        await sub.unsubscribe()


async def add_players(
    engine: AsyncEngine, quiz_id: str, player_ids: list[str], joined: int
) -> None:
    """The quiz's SQL rows: the quiz (running its first question), two questions, a
    `players` row per player."""
    store = QuizStore(engine)
    questions = [
        Question(i, "q", ["a", "b"], correct_choice=1, points=1000, time_limit_ms=20_000)
        for i in range(2)
    ]
    await store.create(quiz_id, "bench", "bench", joined, questions)
    async with engine.begin() as conn:
        await store.transition(conn, quiz_id, {}, state="RUNNING", current_question=0)
    # The bulk insert of quizctl enrol, 20,000 rows a statement.
    for i in range(0, len(player_ids), 20_000):
        async with engine.begin() as conn:
            await store.add_players(
                conn, quiz_id, [(pid, f"p{pid}") for pid in player_ids[i : i + 20_000]], joined
            )


async def timed_sync(job: SyncJob) -> tuple[SyncReport, float]:
    started = time.perf_counter()
    report = await job.run()
    return report, time.perf_counter() - started


async def main(args: argparse.Namespace) -> dict[str, Any]:
    space = Space.from_args("bench", args)
    async with space.claim() as url:
        settings = Settings(
            database_url=url,
            nats_url=args.nats,
            redis_url=args.redis,
            nats_prefix=space.nats_prefix,
            key_prefix=space.key_prefix,
            sync_batch_size=args.batch,
        )
        subjects = messaging.Subjects(settings.nats_prefix)
        nc = await nats.connect(args.nats)
        engine = create_engine(url)
        redis = Redis.from_url(args.redis, decode_responses=True)
        try:
            await messaging.ensure_streams(nc.jetstream(), subjects)
            quiz_id = "BENCH" + space.tag[:3].upper()
            created = now_ms()
            player_ids = [f"{i:016x}" for i in range(args.players)]
            t0 = time.perf_counter()
            await add_players(engine, quiz_id, player_ids, created)
            seeded = time.perf_counter() - t0
            t0 = time.perf_counter()
            await publish_answers(nc, subjects, quiz_id, 0, player_ids, created + 1000)
            published = time.perf_counter() - t0
            print(
                f"  set up: {args.players:,} player rows in {seeded:.1f} s, "
                f"{args.players:,} answers in JetStream in {published:.1f} s",
                file=sys.stderr,
            )

            job = SyncJob(engine, nc, LiveQuizzes(redis, settings.key_prefix), settings)
            profile = args.profile / "sync-full.raw" if args.profile else None
            async with py_spy(os.getpid(), profile, "--rate", "250"):
                full, full_s = await timed_sync(job)
            if profile:
                print(f"  profile of the full sync: {profile}", file=sys.stderr)
            changed = player_ids[:: max(1, args.players // args.changed)][: args.changed]
            await publish_answers(nc, subjects, quiz_id, 1, changed, created + 10_000_000)
            incremental, incr_s = await timed_sync(job)
        finally:
            await redis.aclose()
            await engine.dispose()
            await nc.close()

    # Rows written: one answer row plus one score row per accepted answer here.
    full_rows = full.answers * 2
    incr_rows = incremental.answers * 2
    result: dict[str, Any] = {
        "benchmark": "sync_job",
        "database": make_url(args.mysql).get_backend_name(),
        "players": args.players,
        "batch": args.batch,
        "publish_answers_per_s": round(args.players / published),
        "full_answers": full.answers,
        "full_batches": full.batches,
        "full_seconds": round(full_s, 3),
        "full_answers_per_s": round(full.answers / full_s),
        "full_rows_per_s": round(full_rows / full_s),
        "incremental_answers": incremental.answers,
        "incremental_seconds": round(incr_s, 3),
        "incremental_rows_per_s": round(incr_rows / incr_s),
        "targets_met": {
            "full_rows_per_s_at_least_20000": full_rows / full_s >= TARGET_FULL_ROWS_PER_S,
            "incremental_within_1s": incr_s <= TARGET_INCREMENTAL_SECONDS,
        },
    }
    print(f"sync job on {result['database']}, {args.players:,} players, batch {args.batch}")
    print(
        f"  full first sync:  {full.answers:>9,} answers  {full_s:8.3f} s  "
        f"{result['full_rows_per_s']:>9,} rows/s  ({result['full_answers_per_s']:,} answers/s)"
    )
    print(
        f"  incremental:      {incremental.answers:>9,} answers  {incr_s:8.3f} s  "
        f"{result['incremental_rows_per_s']:>9,} rows/s  (on the {args.players:,}-player board)"
    )
    print(json.dumps(result))
    return result


def cli() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--players", type=int, default=100_000)
    parser.add_argument("--changed", type=int, default=1_000)
    parser.add_argument("--batch", type=int, default=Settings().sync_batch_size)
    add_server_args(parser)
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="record a py-spy profile of the full sync into DIR",
    )
    # On uvloop, as `quizmesh-sync` runs the job.
    run_cleanly(main(parser.parse_args()), fast_loop=True)


if __name__ == "__main__":
    cli()
