"""What one accepted answer costs the shared servers (issue 14 item 2), by how many
answers share a round trip.

    .venv/bin/python -m benchmarks.answer_cost
    .venv/bin/python -m benchmarks.answer_cost --answers 20000 --batches 1,4,16

Redis: the real answer script (services/live/scripts/submit_answer.lua) on a real
running quiz's keys (a private prefix), every call a new player's first answer, so
every one is accepted and scored. JetStream: the AcceptedAnswer record the score
service publishes, with its Nats-Msg-Id and traceparent headers, each acknowledged,
into a stream of its own (file storage, one replica: the local servers' setting).
Each figure is the server process's CPU (psutil, user + system) over the run,
divided by the answers: what the server spends on the commands and on the round
trips that carry them. Redis's own `usec_per_call` for the script (INFO
commandstats) is printed beside it: the script's work without the network.

A batch is b answers written at once and awaited together, which is what the score
service's group commit does when b answers are in flight; the score service's
metrics (quizmesh_*_batch_size) say what b is under a given load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import nats
import psutil
import redis.asyncio as aioredis
from nats.js.api import StorageType, StreamConfig
from quizmesh.common.v1 import events_pb2

from benchmarks._stack import run_cleanly
from benchmarks.intake import cpu_seconds, listener
from services.live.keys import QuizKeys
from services.live.layout import SCALE
from services.live.scripts import source
from services.mesh.clock import timestamp

QUIZ_ID = "BENCHCOST"
# The default quiz: speed scoring, 1,000 points, 20 s, 4 choices (see layout.QuestionSpec).
QUESTION_SPEC = "1|1000|20000|4"


@dataclass(frozen=True)
class Cost:
    server: str
    batch: int
    answers: int
    seconds: float
    cpu_us: float  # server CPU per answer
    script_us: float = 0.0  # Redis: the script's own time per call (commandstats)


async def measure(
    server: psutil.Process | None,
    answers: int,
    batch: int,
    send: Callable[[int, int], Awaitable[None]],
) -> tuple[float, float]:
    """(wall seconds, server CPU µs per answer) for `answers` sent `batch` at a time;
    send(first, count) sends answers first .. first + count - 1 and awaits them."""
    before, started = cpu_seconds(server), time.perf_counter()
    for first in range(0, answers, batch):
        await send(first, min(batch, answers - first))
    seconds = time.perf_counter() - started
    return seconds, (cpu_seconds(server) - before) * 1e6 / answers


async def script_stats(client: Any) -> tuple[int, int]:
    """EVALSHA's calls and µs so far (INFO commandstats; other clients' count too,
    which is why the shared server should be quiet while this runs)."""
    stats = (await client.info("commandstats")).get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)), int(stats.get("usec", 0))


async def redis_costs(url: str, answers: int, batches: Sequence[int]) -> list[Cost]:
    client = aioredis.from_url(url, decode_responses=True)
    server = listener("redis-server", client.connection_pool.connection_kwargs.get("port", 6379))
    prefix = f"bench:cost:{uuid.uuid4().hex[:8]}:"
    keys = QuizKeys(prefix, QUIZ_ID)
    sha = await client.script_load(source("submit_answer"))
    costs = []
    try:
        for batch in batches:
            now = int(time.time() * 1000)
            await client.delete(*keys.all())
            await client.hset(
                keys.state,
                mapping={
                    "status": "RUNNING",
                    "question": 0,
                    "opened_at": now,
                    "deadline": now + 3_600_000,
                    "epoch": now - 1000,
                    "instant_feedback": 0,
                    "version": 0,
                },
            )
            await client.hset(keys.questions, "0", QUESTION_SPEC)
            for first in range(0, answers, 10_000):
                players = {f"p{i}": 0.0 for i in range(first, min(answers, first + 10_000))}
                await client.zadd(keys.board, players)
            script_keys = [keys.state, keys.questions, keys.answers, keys.board]
            script_keys += [keys.pending, keys.changed]

            async def send(first: int, count: int, script_keys: list[str] = script_keys) -> None:
                async with client.pipeline(transaction=False) as pipe:
                    for i in range(first, first + count):
                        at = int(time.time() * 1000)
                        pipe.evalsha(sha, 6, *script_keys, f"p{i}", 0, i % 4, at, SCALE)
                    replies: list[Any] = await pipe.execute()
                if any(r[0] != "accepted" for r in replies):
                    raise RuntimeError(f"an answer was not accepted: {replies[:3]}")

            calls, usec = await script_stats(client)
            seconds, cpu_us = await measure(server, answers, batch, send)
            calls_after, usec_after = await script_stats(client)
            script_us = (usec_after - usec) / max(1, calls_after - calls)
            costs.append(Cost("redis", batch, answers, seconds, cpu_us, script_us))
    finally:
        await client.delete(*keys.all())
        await client.aclose()
    return costs


async def jetstream_costs(url: str, answers: int, batches: Sequence[int]) -> list[Cost]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    port = int(url.rsplit(":", 1)[-1]) if url.count(":") > 1 else 4222
    server = listener("nats-server", port)
    name = f"BENCH_COST_{uuid.uuid4().hex[:8].upper()}"
    subject = f"bench.cost.{name.lower()}"
    await js.add_stream(
        StreamConfig(name=name, subjects=[f"{subject}.>"], storage=StorageType.FILE, num_replicas=1)
    )
    inbox = nc.new_inbox()
    waiting: dict[str, asyncio.Future[None]] = {}

    async def on_ack(msg: Any) -> None:
        future = waiting.pop(msg.subject, None)
        if future is not None and not future.done():
            if b'"error"' in msg.data:
                future.set_exception(RuntimeError(msg.data.decode()))
            else:
                future.set_result(None)

    subscription = await nc.subscribe(f"{inbox}.*", cb=on_ack)
    costs = []
    try:
        for round_, batch in enumerate(batches):
            loop = asyncio.get_running_loop()

            async def send(first: int, count: int, round_: int = round_, loop: Any = loop) -> None:
                futures = []
                for i in range(first, first + count):
                    record = events_pb2.AcceptedAnswer(
                        quiz_id=QUIZ_ID,
                        question_index=round_,
                        player_id=f"p{i}",
                        choice_index=1,
                        correct=True,
                        points_awarded=900,
                        total_score=900,
                        answered_at=timestamp(int(time.time() * 1000)),
                    )
                    reply = f"{inbox}.{i}"
                    future: asyncio.Future[None] = loop.create_future()
                    waiting[reply] = future
                    futures.append(future)
                    headers = {
                        "Nats-Msg-Id": f"{QUIZ_ID}:{round_}:p{i}",
                        "traceparent": f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01",
                    }
                    await nc.publish(
                        f"{subject}.{QUIZ_ID}", record.SerializeToString(), reply, headers
                    )
                await asyncio.wait_for(asyncio.gather(*futures), 10)

            seconds, cpu_us = await measure(server, answers, batch, send)
            costs.append(Cost("jetstream", batch, answers, seconds, cpu_us))
    finally:
        await subscription.unsubscribe()
        await js.delete_stream(name)
        await nc.close()
    return costs


def report(costs: Sequence[Cost]) -> None:
    print("server      answers per round trip   answers/s   server CPU µs per answer")
    for c in costs:
        extra = f"   (the script itself: {c.script_us:.1f} µs)" if c.server == "redis" else ""
        print(
            f"{c.server:<10} {c.batch:>24} {c.answers / c.seconds:>11,.0f} {c.cpu_us:>26.1f}{extra}"
        )


async def run(args: argparse.Namespace) -> list[Cost]:
    batches = [int(b) for b in args.batches.split(",")]
    return [
        *await redis_costs(args.redis, args.answers, batches),
        *await jetstream_costs(args.nats, args.answers, batches),
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.answer_cost")
    parser.add_argument("--answers", type=int, default=20_000, help="answers per case")
    parser.add_argument("--batches", default="1,2,4,8,16,32", help="answers per round trip")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    args = parser.parse_args(argv)
    costs = run_cleanly(run(args))
    report(costs)
    print(
        json.dumps(
            {"benchmark": "answer_cost", "costs": [c.__dict__ for c in costs]},
            separators=(",", ":"),
        )
    )


if __name__ == "__main__":
    main()
