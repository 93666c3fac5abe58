"""Benchmark of the sync job (JetStream -> SQL): a full first sync of a quiz with
N players, then an incremental run with K changed players.

    .venv/bin/python -m benchmarks.sync_job --players 100000 --changed 1000

Uses the MySQL/MariaDB server at --mysql (a private database it creates and drops)
and NATS at --nats (its own stream names). Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
import uuid

import nats
from quizmesh.common.v1 import events_pb2
from redis.asyncio import Redis
from sqlalchemy import insert, text
from sqlalchemy.engine import make_url

from services.core import messaging
from services.core.clock import now_ms, timestamp
from services.database.engine import create_engine
from services.database.migrate import upgrade
from services.database.tables import players, questions, quizzes
from services.sync.config import Settings
from services.sync.job import SyncJob, SyncReport


async def publish_answers(
    js: nats.js.JetStreamContext,
    subjects: messaging.Subjects,
    quiz_id: str,
    question: int,
    player_ids: list[str],
    start_ms: int,
) -> None:
    """Accepted answers as the score service records them, 1,000 acks in flight."""
    for i in range(0, len(player_ids), 1000):
        acks = []
        for n, pid in enumerate(player_ids[i : i + 1000]):
            answered = start_ms + i + n
            record = events_pb2.AcceptedAnswer(
                quiz_id=quiz_id,
                question_index=question,
                player_id=pid,
                choice_index=1,
                correct=True,
                points_awarded=500 + (i + n) % 500,
                total_score=(question + 1) * 1000 + (i + n) % 500,
                answered_at=timestamp(answered),
            )
            acks.append(
                js.publish(
                    subjects.answers(quiz_id),
                    record.SerializeToString(),
                    headers={"Nats-Msg-Id": f"{quiz_id}:{question}:{pid}"},
                )
            )
        await asyncio.gather(*acks)


async def timed_sync(job: SyncJob) -> tuple[SyncReport, float]:
    started = time.perf_counter()
    report = await job.run()
    return report, time.perf_counter() - started


async def main(args: argparse.Namespace) -> None:
    tag = uuid.uuid4().hex[:8]
    database = f"quizmesh_bench_{tag}"
    server = make_url(args.mysql)
    admin = create_engine(args.mysql)
    async with admin.connect() as conn:
        await conn.execute(text(f"CREATE DATABASE `{database}`"))
    url = server.set(database=database).render_as_string(hide_password=False)
    settings = Settings(
        database_url=url,
        nats_url=args.nats,
        redis_url=args.redis,
        nats_prefix=f"bench{tag}",
        key_prefix=f"bench{tag}:",
        sync_batch_size=args.batch,
    )
    subjects = messaging.Subjects(settings.nats_prefix)
    nc = await nats.connect(args.nats)
    js = nc.jetstream()
    engine = create_engine(url)
    redis = Redis.from_url(args.redis, decode_responses=True)
    try:
        await upgrade(url)
        await messaging.ensure_streams(js, subjects)
        quiz_id = "BENCH" + tag[:3].upper()
        created = now_ms()
        player_ids = [f"{i:016x}" for i in range(args.players)]
        async with engine.begin() as conn:
            await conn.execute(
                insert(quizzes).values(
                    id=quiz_id,
                    title="bench",
                    host="bench",
                    state="RUNNING",
                    question_count=2,
                    current_question=0,
                    closed_question=-1,
                    close_reason=0,
                    created_ms=created,
                )
            )
            await conn.execute(
                insert(questions),
                [
                    {
                        "quiz_id": quiz_id,
                        "idx": i,
                        "text": "q",
                        "choices": '["a","b"]',
                        "correct_choice": 1,
                        "points": 1000,
                        "time_limit_ms": 20000,
                    }
                    for i in range(2)
                ],
            )
            for i in range(0, len(player_ids), 10_000):
                await conn.execute(
                    insert(players),
                    [
                        {"id": pid, "quiz_id": quiz_id, "nickname": f"p{pid}", "joined_ms": created}
                        for pid in player_ids[i : i + 10_000]
                    ],
                )
        t0 = time.perf_counter()
        await publish_answers(js, subjects, quiz_id, 0, player_ids, created + 1000)
        published = time.perf_counter() - t0

        job = SyncJob(engine, js, redis, settings)
        full, full_s = await timed_sync(job)
        changed = player_ids[:: max(1, args.players // args.changed)][: args.changed]
        await publish_answers(js, subjects, quiz_id, 1, changed, created + 10_000_000)
        incremental, incr_s = await timed_sync(job)

        # Rows written: one answer row plus one score row per accepted answer here.
        full_rows = full.answers * 2
        incr_rows = incremental.answers * 2
        result = {
            "benchmark": "sync_job",
            "database": server.get_backend_name(),
            "players": args.players,
            "batch": args.batch,
            "publish_answers_per_s": round(args.players / published),
            "full_answers": full.answers,
            "full_seconds": round(full_s, 3),
            "full_rows_per_s": round(full_rows / full_s),
            "incremental_answers": incremental.answers,
            "incremental_seconds": round(incr_s, 3),
            "incremental_rows_per_s": round(incr_rows / incr_s),
        }
        print(f"sync job on {result['database']}, {args.players:,} players, batch {args.batch}")
        print(
            f"  full first sync:  {full.answers:>9,} answers  {full_s:8.3f} s  "
            f"{result['full_rows_per_s']:>9,} rows/s"
        )
        print(
            f"  incremental:      {incremental.answers:>9,} answers  {incr_s:8.3f} s  "
            f"{result['incremental_rows_per_s']:>9,} rows/s"
        )
        print(json.dumps(result))
    finally:
        await redis.aclose()
        await engine.dispose()
        for stream in (subjects.events_stream, subjects.answers_stream):
            with contextlib.suppress(Exception):
                await js.delete_stream(stream)
        await nc.close()
        async with admin.connect() as conn:
            await conn.execute(text(f"DROP DATABASE IF EXISTS `{database}`"))
        await admin.dispose()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--players", type=int, default=100_000)
    parser.add_argument("--changed", type=int, default=1_000)
    parser.add_argument("--batch", type=int, default=Settings().sync_batch_size)
    parser.add_argument("--mysql", default="mysql+aiomysql://root@127.0.0.1:3306/test")
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()
