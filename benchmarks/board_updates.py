"""Benchmark of what a leaderboard snapshot of one big quiz costs Redis (issue 14,
item 1): the board update the leaderboard service takes once per snapshot
(take_update.lua: the changes since the last one and the top), against the
per-watcher script it replaces (rank_each.lua: a ZREVRANK and ZSCORE per watching
player, per stream process), as Redis's own `INFO commandstats` CPU.

    .venv/bin/python -m benchmarks.board_updates --players 1000000 --watchers 1000,10000

The quiz's players are enrolled in join batches (ties of 5,000 at 0 points); each
snapshot has --changes players' scores changed. The updates are applied to a
stream process's copy (services/stream/local_board.py) as they would be, and its
ranks are checked against Redis for a sample of each watcher count. Runs on the
configured Redis under a key prefix of its own, removed after. Prints a table and
one JSON line. The copy's own CPU: benchmarks/own_ranks.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
import uuid
from typing import Any, cast

from redis.asyncio import Redis

from services.database.records import Question, QuizRecord, QuizState
from services.live.board import LiveBoard
from services.live.keys import QuizKeys
from services.live.layout import SCALE, pack
from services.live.pipeline import PipelinedRedis, RedisAddress
from services.live.quizzes import LiveQuizzes
from services.stream.local_board import LocalBoard

ENROL_BATCH = 5_000
SNAPSHOTS = 8
PART = 5_000  # changes per update, as services/leaderboard/coalescer.py takes them


async def script_usec(redis: Redis) -> float:
    """Redis CPU spent in scripts so far (µs)."""
    stats: dict[str, Any] = await redis.info("commandstats")
    return sum(
        float(v["usec"]) for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval")
    )


async def take_all(board: LiveBoard, quiz_id: str) -> list[Any]:
    parts = []
    while True:
        update = await board.take_update(quiz_id, 10, PART)
        assert update is not None
        parts.append(update)
        if update.complete:
            return parts


async def run(args: argparse.Namespace) -> dict[str, Any]:
    redis = Redis.from_url(args.redis_url, decode_responses=True)
    pipe = PipelinedRedis(RedisAddress.parse(args.redis_url))
    prefix = f"bench{uuid.uuid4().hex[:8]}:"
    live, board = LiveQuizzes(redis, prefix), LiveBoard(pipe, prefix)
    quiz_id = "STADIUM1"
    keys = QuizKeys(prefix, quiz_id)
    rng = random.Random(7)
    try:
        quiz = QuizRecord(quiz_id, "stadium", "h", QuizState.RUNNING, 1, 0, 0, 10**12, -1, 0, False)
        await live.publish(quiz, [Question(0, "q", ["a", "b"], 0, 1000, 600_000)])
        ids = [uuid.uuid4().hex[:16] for _ in range(args.players)]
        for i in range(0, len(ids), ENROL_BATCH):
            batch = [(pid, pid) for pid in ids[i : i + ENROL_BATCH]]
            await live.enrol(quiz_id, batch, reached_ms=i // ENROL_BATCH)
        await take_all(board, quiz_id)  # the joins

        whole = cast(
            list[tuple[str, float]], await redis.zrange(keys.board, 0, -1, withscores=True)
        )
        scores = {str(pid): float(score) for pid, score in whole}
        copy = LocalBoard()
        copy.reset(scores.items())

        take_usec: list[float] = []
        for snapshot in range(SNAPSHOTS):
            moved = rng.sample(ids, args.changes)
            async with redis.pipeline(transaction=False) as p:
                for pid in moved:
                    points = int(scores[pid] // SCALE) + 1 + rng.randrange(1000)
                    scores[pid] = pack(max(points, 0), 10_000 + snapshot)
                    p.zadd(keys.board, {pid: scores[pid]})
                p.sadd(keys.changed, *moved)
                await p.execute()
            before = await script_usec(redis)
            parts = await take_all(board, quiz_id)
            take_usec.append(await script_usec(redis) - before)
            for update in parts:
                copy.apply(list(zip(update.player_ids, update.packed_scores, strict=True)))

        result: dict[str, Any] = {
            "players": args.players,
            "changes": args.changes,
            "take_update_us": statistics.median(take_usec),
        }
        for watchers in args.watchers:
            watching = rng.sample(ids, watchers)
            old = []
            for _ in range(3):
                before = await script_usec(redis)
                truth = await board.places(quiz_id, watching, board_size=10**12)
                old.append(await script_usec(redis) - before)
            assert copy.places(watching) == truth, "the copy ranks differently from Redis"
            result[f"rank_each_us_{watchers}"] = statistics.median(old)
        return result
    finally:
        await redis.delete(*keys.all())
        await pipe.close()
        await redis.aclose()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--players", type=int, default=1_000_000)
    parser.add_argument("--changes", type=int, default=12_500)
    parser.add_argument("--watchers", default="1000,10000")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    args.watchers = [int(w) for w in args.watchers.split(",")]
    started = time.perf_counter()
    r = asyncio.run(run(args))
    print(f"a snapshot's Redis CPU: {r['players']:,} players, {r['changes']:,} changes")
    print(
        f"  take_update, once per snapshot, any number of watchers: {r['take_update_us']:,.0f} µs"
    )
    for w in args.watchers:
        us = r[f"rank_each_us_{w}"]
        print(f"  rank_each (replaced), {w:,} watchers of one stream process: {us:,.0f} µs")
    print(f"  (the copy's ranks equal Redis's; {time.perf_counter() - started:.0f} s in all)")
    print(json.dumps(r))


if __name__ == "__main__":
    cli()
