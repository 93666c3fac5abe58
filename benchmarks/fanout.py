"""Fan-out benchmark: N watchers of one quiz's leaderboard on the stream service,
and how long an accepted answer takes to reach the last of them.

    .venv/bin/python -m benchmarks.fanout --watchers 1000,5000,10000
    .venv/bin/python -m benchmarks.fanout --processes 2 --watchers 20000

Every service runs as its own process (as `make run` starts them) on the shared
Redis, NATS and MySQL, under names of the run's own that are removed after. The
watchers are native gRPC streams spread over several client processes, each with a
few connections. For each N, on a freshly started stream service:

- latency: from SubmitAnswer returning to the last watcher receiving the board with
  that answer (each client process notes time.time() per stream; the driver takes
  the latest over all processes), p50/p90/p99/max over --updates answers, sent one
  at a time once the previous one reached everybody;
- memory per watcher: the stream processes' RSS with N watchers minus before, / N;
- CPU per delivered message: the stream processes' CPU over the updates, minus
  their idle CPU over as long, / (updates x N).

Prints a table and one JSON line. `--profile DIR` records py-spy profiles of the
stream processes during the updates.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from benchmarks import _fanout_watchers as watchers
from benchmarks._fanout_stack import BenchStack, Player, add_stack_args, profile, sample
from benchmarks._stack import run_cleanly
from services.live.keys import QuizKeys

MiB = 1024 * 1024


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


class Reports:
    """The watcher processes' reports, moved from their queue onto our loop."""

    def __init__(self, queue: Queue[watchers.Report | None]) -> None:
        self.queue = queue
        self.loop = asyncio.get_running_loop()
        self.changed = asyncio.Event()
        self.ready: dict[int, float] = {}
        self.done: dict[int, tuple[float, int]] = {}
        self.seen: dict[int, dict[int, tuple[float, float]]] = {}
        self.errors: list[str] = []
        # Each watcher process's CPU seconds at its latest "seen" report.
        self.client_cpu: dict[int, float] = {}
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        while True:
            report = self.queue.get()
            if report is None:
                return
            self.loop.call_soon_threadsafe(self._take, report)

    def _take(self, report: watchers.Report) -> None:
        kind, index, *rest = report
        if kind == "ready":
            self.ready[index] = rest[1]
        elif kind == "seen":
            version, first, last, cpu = rest
            self.seen.setdefault(version, {})[index] = (first, last)
            self.client_cpu[index] = cpu
        elif kind == "done":
            self.done[index] = (rest[0], rest[1])
        elif kind == "error":
            self.errors.append(f"watcher process {index}: {rest[0]}")
        self.changed.set()

    async def until(self, condition: Any, seconds: float) -> None:
        async with asyncio.timeout(seconds):
            while not condition():
                if self.errors:
                    raise RuntimeError("; ".join(self.errors[:3]))
                self.changed.clear()
                await self.changed.wait()

    def close(self) -> None:
        self.queue.put(None)


@dataclass
class Result:
    watchers: int
    processes: int
    latencies_ms: list[float] = field(default_factory=list)
    first_ms: list[float] = field(default_factory=list)
    answer_ms: list[float] = field(default_factory=list)
    rss_before: int = 0
    rss_connected: int = 0
    rss_after: int = 0
    cpu_us_per_message: float = 0.0
    main_thread_us_per_message: float = 0.0
    idle_cpu_percent: float = 0.0
    client_cpu_us_per_message: float = 0.0
    connect_seconds: float = 0.0
    worker_connections: list[int] = field(default_factory=list)
    worker_streams: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        lat = self.latencies_ms
        return {
            "watchers": self.watchers,
            "stream_processes": self.processes,
            "updates": len(lat),
            "last_watcher_ms": {
                "p50": round(percentile(lat, 50), 1),
                "p90": round(percentile(lat, 90), 1),
                "p99": round(percentile(lat, 99), 1),
                "max": round(max(lat), 1),
            },
            "first_watcher_ms_p50": round(percentile(self.first_ms, 50), 1),
            "answer_rpc_ms_p50": round(percentile(self.answer_ms, 50), 2),
            "kb_per_watcher": round((self.rss_after - self.rss_before) / self.watchers / 1024, 2),
            "kb_per_watcher_connected": round(
                (self.rss_connected - self.rss_before) / self.watchers / 1024, 2
            ),
            "rss_mib": round(self.rss_after / MiB, 1),
            "server_cpu_us_per_message": round(self.cpu_us_per_message, 1),
            "server_main_thread_us_per_message": round(self.main_thread_us_per_message, 1),
            "server_idle_cpu_percent": round(self.idle_cpu_percent, 1),
            "client_cpu_us_per_message": round(self.client_cpu_us_per_message, 1),
            "connect_seconds": round(self.connect_seconds, 2),
            "connections_per_stream_process": self.worker_connections,
            "watchers_per_stream_process": self.worker_streams,
        }


async def measure(stack: BenchStack, args: argparse.Namespace, n: int) -> Result:
    await stack.start_stream()
    result = Result(watchers=n, processes=stack.stream_processes)
    quiz_id = await stack.create_quiz(questions=1)
    players = await stack.join(quiz_id, max(args.updates, n if args.as_players else 0))
    await stack.start_quiz(quiz_id)
    answering = players[: args.updates]
    tokens = [p.token for p in players[:n]] if args.as_players else [""] * n

    await asyncio.sleep(1.0)
    workers = stack.stream_worker_pids()
    result.rss_before = sample(workers).rss

    targets = tuple(f"127.0.0.1:{port}" for port in stack.stream_ports)
    clients = max(1, min(args.clients, n // 100))
    spawned = watchers.ClientProcesses()
    reports = Reports(spawned.queue)
    spawned.start(
        watchers.main,
        (
            watchers.WatcherSpec(
                index=i,
                targets=targets,
                quiz_id=quiz_id,
                rpc=args.rpc,
                tokens=tuple(tokens[i::clients]),
                connections=args.connections,
                client=args.client,
            )
            for i in range(clients)
        ),
    )
    try:
        started = time.perf_counter()
        await reports.until(lambda: len(reports.ready) == clients, seconds=600)
        result.connect_seconds = time.perf_counter() - started
        client_cpu_ready = sum(reports.ready.values())
        await asyncio.sleep(2.0)
        result.rss_connected = sample(workers).rss
        result.worker_connections = stack.connections_per_worker()
        result.worker_streams = await stack.streams_per_worker()

        idle_from = sample(workers)
        await asyncio.sleep(3.0)
        idle_to = sample(workers)
        idle_rate = (idle_to.cpu - idle_from.cpu) / 3.0
        idle_main_rate = (idle_to.main - idle_from.main) / 3.0
        result.idle_cpu_percent = idle_rate * 100

        redis = Redis.from_url(stack.space.redis_url, decode_responses=True)
        state = QuizKeys(stack.space.key_prefix, quiz_id).state
        spies = []
        if args.profile:
            seconds = args.updates * (args.gap + 0.2 + n / 20000)
            spies = await profile(
                workers, seconds, args.profile, f"fanout-{n}x{len(workers)}", args.native
            )
            await asyncio.sleep(1.0)  # py-spy attaches
        before = sample(workers)
        began = time.perf_counter()
        try:
            for k, player in enumerate(answering):
                await answer_once(stack, quiz_id, player, redis, state, reports, result)
                print(
                    f"  {n} watchers, update {k + 1}/{len(answering)}: "
                    f"last {result.latencies_ms[-1]:.0f} ms",
                    file=sys.stderr,
                    end="\r",
                )
                await asyncio.sleep(args.gap)
        finally:
            await redis.aclose()
        elapsed = time.perf_counter() - began
        after = sample(workers)
        print(file=sys.stderr)
        for spy in spies:
            with contextlib.suppress(Exception):
                await spy.wait()
        delivered = len(answering) * n
        busy = after.cpu - before.cpu - idle_rate * elapsed
        result.cpu_us_per_message = busy / delivered * 1e6
        busy_main = after.main - before.main - idle_main_rate * elapsed
        result.main_thread_us_per_message = busy_main / delivered * 1e6
        result.rss_after = sample(workers).rss
    finally:
        spawned.stop.set()
        with contextlib.suppress(TimeoutError):
            await reports.until(lambda: len(reports.done) == clients, seconds=60)
        reports.close()
        spawned.reap()
    client_cpu = sum(reports.client_cpu.values()) - client_cpu_ready
    result.client_cpu_us_per_message = client_cpu / (len(answering) * n) * 1e6
    return result


async def answer_once(
    stack: BenchStack,
    quiz_id: str,
    player: Player,
    redis: Redis,
    state: str,
    reports: Reports,
    result: Result,
) -> None:
    sent = time.time()
    await stack.answer(quiz_id, player, question=0, choice=0)
    accepted = time.time()
    version = int(await redis.hget(state, "version") or 0)
    clients = len(reports.ready)
    await reports.until(lambda: len(reports.seen.get(version, {})) == clients, seconds=60)
    seen = reports.seen.pop(version)
    result.answer_ms.append((accepted - sent) * 1000)
    result.latencies_ms.append((max(last for _, last in seen.values()) - accepted) * 1000)
    result.first_ms.append((min(first for first, _ in seen.values()) - accepted) * 1000)


def table(results: list[Result]) -> str:
    head = (
        f"{'watchers':>8} {'procs':>5} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
        f"{'max ms':>8} {'first ms':>8} {'KB/watcher':>10} {'srv µs/msg':>10} {'main µs':>7} "
        f"{'cli µs/msg':>10} {'connect s':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        s = r.summary()
        lat = s["last_watcher_ms"]
        lines.append(
            f"{r.watchers:>8} {r.processes:>5} {lat['p50']:>8} {lat['p90']:>8} "
            f"{lat['p99']:>8} {lat['max']:>8} {s['first_watcher_ms_p50']:>8} "
            f"{s['kb_per_watcher']:>10} {s['server_cpu_us_per_message']:>10} "
            f"{s['server_main_thread_us_per_message']:>7} "
            f"{s['client_cpu_us_per_message']:>10} {s['connect_seconds']:>9}"
        )
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    counts = [int(x) for x in args.watchers.split(",")]
    with tempfile.TemporaryDirectory(prefix="quizmesh-fanout-") as workdir:
        stack = BenchStack.from_args(
            Path(workdir),
            args,
            stream_shared_port=not args.separate_ports,
            backend_source=args.backend_source,
        )
        results: list[Result] = []
        try:
            await stack.start()
            for n in counts:
                results.append(await measure(stack, args, n))
                print(table(results[-1:]).splitlines()[-1], file=sys.stderr)
        finally:
            await stack.close()
    print(table(results))
    print(
        json.dumps(
            {
                "benchmark": "fanout",
                "rpc": args.rpc,
                "watch_as": "players" if args.as_players else "spectators",
                "stream_processes": args.processes,
                "shared_port": not args.separate_ports,
                "client_processes": args.clients,
                "client": args.client,
                "connections_per_client": args.connections,
                "cpus": os.cpu_count(),
                "results": [r.summary() for r in results],
            }
        )
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fanout", description=__doc__)
    parser.add_argument("--watchers", default="1000,5000,10000", help="comma-separated N")
    parser.add_argument("--processes", type=int, default=1, help="stream service processes")
    parser.add_argument(
        "--separate-ports",
        action="store_true",
        help="one port per stream process, watchers split evenly (default: one "
        "SO_REUSEPORT port, QUIZMESH_PROCESSES)",
    )
    parser.add_argument("--updates", type=int, default=30, help="answers per N")
    parser.add_argument("--gap", type=float, default=0.3, help="seconds between updates")
    parser.add_argument("--clients", type=int, default=4, help="watcher processes")
    parser.add_argument("--connections", type=int, default=8, help="per watcher process")
    parser.add_argument(
        "--client",
        choices=["h2", "grpc"],
        default="h2",
        help="watcher implementation: frame-level HTTP/2 (cheap) or grpc.aio",
    )
    parser.add_argument(
        "--rpc", choices=["WatchLeaderboard", "WatchQuiz"], default="WatchLeaderboard"
    )
    parser.add_argument(
        "--as-players",
        action="store_true",
        help="watch with player tokens (each stream also gets its own rank)",
    )
    parser.add_argument(
        "--backend-source", type=Path, default=None, help="the other services from here"
    )
    add_stack_args(parser)
    return parser.parse_args(argv)


if __name__ == "__main__":
    run_cleanly(main(parse_args()))
