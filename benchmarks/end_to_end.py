"""End-to-end benchmark: a simulated quiz through Envoy, as players see it.

    .venv/bin/python -m benchmarks.end_to_end --players 1000 --questions 10
    .venv/bin/python -m benchmarks.end_to_end --players 100 --questions 3   # quick

Every service runs as its own process (as `make run` starts them) behind a real
Envoy rendered from envoy/envoy.yaml.tmpl, on the shared Redis, NATS and MySQL under
names of the run's own that are removed after. The host drives the quiz over
HTTP/JSON; each player joins and answers over HTTP/JSON (POST .../answers, at a
random moment of each question's answer window) and watches the leaderboard with
its own token over Server-Sent Events, one HTTP/1.1 connection per player as a
browser would (--native-watchers adds gRPC watchers through Envoy too).

Reported, over all answers:
- answer latency: the POST's round trip as the player sees it;
- visible on every watcher: from the answer's HTTP response to the moment the last
  watcher received a board including it (a board whose version is at least the
  quiz's board version read right after the response: an upper bound, as other
  answers may have landed in between);
- visible on the first watcher, for comparison.
Times are this machine's wall clock in every process. Prints a table and one JSON
line.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import os
import random
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import yaml
from redis.asyncio import BlockingConnectionPool, Redis

from benchmarks import _fanout_sse as sse
from benchmarks._fanout_http import HttpError, HttpPool
from benchmarks._fanout_stack import BenchStack, Player, add_stack_args, profile, sample
from benchmarks._fanout_watchers import ClientProcesses, Report
from benchmarks._stack import run_cleanly
from devstack.gateway import EnvoyProcess, RateLimit, local_gateway, write_envoy_config
from services.identity.tokens import Role
from services.live.keys import QuizKeys

TIME_LIMIT_MS = 20_000


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))]

    return {
        "p50": round(rank(50), 1),
        "p90": round(rank(90), 1),
        "p99": round(rank(99), 1),
        "max": round(ordered[-1], 1),
    }


@dataclass
class Answer:
    player: int
    question: int
    sent: float
    answered: float
    status: int
    version: int


@dataclass
class Watchers:
    """The watcher processes' reports, moved from their queue onto our loop."""

    queue: Queue[Report | None]
    ready: dict[int, int] = field(default_factory=dict)
    arrivals: dict[int, tuple[list[list[tuple[int, float]]], float, int]] = field(
        default_factory=dict
    )
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.changed = asyncio.Event()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        while (report := self.queue.get()) is not None:
            self.loop.call_soon_threadsafe(self._take, report)

    def _take(self, report: Report) -> None:
        kind, index, *rest = report
        if kind == "ready":
            self.ready[index] = rest[0]
        elif kind == "arrivals":
            self.arrivals[index] = (rest[0], rest[1], rest[2])
        elif kind == "error":
            self.errors.append(f"watcher process {index}: {rest[0]}")
        self.changed.set()

    async def until(self, condition: Any, seconds: float, fail_on_errors: bool = True) -> None:
        async with asyncio.timeout(seconds):
            while not condition():
                if fail_on_errors and self.errors:
                    raise RuntimeError("; ".join(self.errors[:3]))
                self.changed.clear()
                await self.changed.wait()


def visibility(
    arrivals: list[list[tuple[int, float]]], answers: list[Answer]
) -> tuple[list[float], list[float], int]:
    """Per answer: ms until the last and the first watcher saw a board including it;
    and how many answers some watcher never saw."""
    published = sorted({v for seen in arrivals for v, _ in seen})
    last = [0.0] * len(published)
    first = [float("inf")] * len(published)
    count = [0] * len(published)
    for seen in arrivals:
        previous = -1
        for version, at in seen:
            # Boards skipped by this watcher (it got a newer one) count as seen then.
            lo = bisect.bisect_right(published, previous)
            hi = bisect.bisect_right(published, version)
            for j in range(lo, hi):
                last[j] = max(last[j], at)
                first[j] = min(first[j], at)
                count[j] += 1
            previous = version
    to_last: list[float] = []
    to_first: list[float] = []
    unseen = 0
    for answer in answers:
        j = bisect.bisect_left(published, answer.version)
        if j == len(published) or count[j] < len(arrivals):
            unseen += 1
            continue
        to_last.append((last[j] - answer.answered) * 1000)
        to_first.append((first[j] - answer.answered) * 1000)
    return to_last, to_first, unseen


class Game:
    def __init__(self, http: HttpPool, stack: BenchStack, redis: Redis) -> None:
        self.http = http
        self.stack = stack
        self.redis = redis
        self.host = stack.issuer().issue(Role.HOST, "bench", 7200)

    async def call(self, path: str, body: dict[str, Any]) -> Any:
        """A host call."""
        return await self.http.post(path, body, self.host)

    async def next_question(self, quiz_id: str, question: int) -> None:
        """The host's steps to `question` (past the last one: the close). A step on an
        open question only ends it (the reveal), unless its deadline already has."""
        for _ in range(2):
            quiz = (await self.call(f"/v1/quizzes/{quiz_id}:advance", {}))["quiz"]
            if quiz["current_question"] == question or quiz["state"] != "QUIZ_STATE_RUNNING":
                return

    async def create(self, questions: int) -> str:
        quiz = await self.call(
            "/v1/quizzes",
            {
                "title": "end to end",
                "questions": [
                    {
                        "text": f"question {i}",
                        "choices": ["a", "b", "c", "d"],
                        "correct_choice": i % 4,
                        "points": 1000,
                        "time_limit_ms": TIME_LIMIT_MS,
                    }
                    for i in range(questions)
                ],
            },
        )
        return str(quiz["quiz"]["quiz_id"])

    async def join(self, quiz_id: str, players: int) -> list[Player]:
        limit = asyncio.Semaphore(32)

        async def one(i: int) -> Player:
            async with limit:
                joined = await self.http.post(
                    f"/v1/quizzes/{quiz_id}:join", {"nickname": f"player {i}"}
                )
            return Player(joined["player_id"], joined["player_token"])

        return list(await asyncio.gather(*(one(i) for i in range(players))))

    async def answer(
        self, quiz_id: str, question: int, index: int, player: Player, delay: float, state: str
    ) -> Answer:
        await asyncio.sleep(delay)
        choice = question % 4 if random.random() < 0.6 else (question + 1) % 4
        sent = time.time()
        status, _ = await self.http.request(
            "POST",
            f"/v1/quizzes/{quiz_id}/answers",
            {"question_index": question, "choice_index": choice},
            player.token,
        )
        answered = time.time()
        version = int(await self.redis.hget(state, "version") or 0)
        return Answer(index, question, sent, answered, status, version)


async def main(args: argparse.Namespace) -> None:
    random.seed(args.seed)
    natives = min(args.native_watchers, args.players)
    sse_watchers = args.players if args.sse_watchers is None else args.sse_watchers
    with tempfile.TemporaryDirectory(prefix="quizmesh-e2e-") as temporary:
        workdir = str(args.logs or temporary)
        await asyncio.to_thread(Path(workdir).mkdir, parents=True, exist_ok=True)
        stack = BenchStack.from_args(Path(workdir), args)
        envoy: EnvoyProcess | None = None
        # Hundreds of answers land at once; their version reads wait for a connection.
        pool = BlockingConnectionPool.from_url(
            args.redis, decode_responses=True, max_connections=64, timeout=30
        )
        redis = Redis(connection_pool=pool)
        try:
            await stack.start()
            upstreams = {name: f"127.0.0.1:{port}" for name, port in stack.ports.items()}
            upstreams["stream"] = f"127.0.0.1:{stack.stream_ports[0]}"
            config = write_envoy_config(
                Path(workdir) / "envoy.yaml",
                local_gateway(
                    upstreams,
                    stack.jwks,
                    # A whole class joins from 127.0.0.1 here.
                    join_limit=RateLimit(burst=1_000_000, refill=1_000_000),
                ),
            )
            if args.upstream_streams:
                limit_upstream_streams(config, args.upstream_streams)
            envoy = EnvoyProcess(config, log_file=Path(workdir) / "envoy.log")
            await envoy.start()
            http = HttpPool("127.0.0.1", envoy.port, args.http_connections)
            try:
                result = await play(args, stack, envoy, http, redis, sse_watchers, natives)
            finally:
                http.close()
        finally:
            await redis.aclose()
            if envoy is not None:
                await envoy.stop()
            await stack.close()
    print(table(result))
    print(json.dumps({"benchmark": "end_to_end", **result}))


def limit_upstream_streams(config: Path, streams: int) -> None:
    """Caps the streams per Envoy connection to the stream service, so that Envoy
    opens more connections as watchers arrive and SO_REUSEPORT can spread them over
    the stream workers (Envoy otherwise multiplexes every watcher on one connection
    per Envoy worker thread). An experiment for the template, not in it yet."""
    rendered = yaml.safe_load(config.read_text())
    for cluster in rendered["static_resources"]["clusters"]:
        if cluster["name"] == "stream":
            options = cluster["typed_extension_protocol_options"]
            http = options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
            http["explicit_http_config"]["http2_protocol_options"]["max_concurrent_streams"] = (
                streams
            )
    config.write_text(yaml.safe_dump(rendered, sort_keys=False))


async def play(
    args: argparse.Namespace,
    stack: BenchStack,
    envoy: EnvoyProcess,
    http: HttpPool,
    redis: Redis,
    sse_watchers: int,
    natives: int,
) -> dict[str, Any]:
    game = Game(http, stack, redis)
    quiz_id = await game.create(args.questions)
    players = await game.join(quiz_id, args.players)
    state = QuizKeys(stack.space.key_prefix, quiz_id).state
    tokens = [p.token for p in players]
    clients = max(1, min(args.clients, (sse_watchers + natives) // 50))
    # Memory per watcher: Envoy's and the stream processes' RSS before any watch,
    # once all are connected, and after the game (buffers and boards grown).
    memory = {"envoy": [envoy.pid or 0], "stream": stack.stream_worker_pids()}
    rss_before = {name: sample(pids).rss for name, pids in memory.items()}
    rss_connected = rss_after = rss_before
    spawned = ClientProcesses()
    watchers = Watchers(spawned.queue)
    spawned.start(
        sse.main,
        (
            sse.E2eWatcherSpec(
                index=i,
                host="127.0.0.1",
                port=envoy.port,
                quiz_id=quiz_id,
                sse_tokens=tuple(tokens[:sse_watchers][i::clients]),
                native_tokens=tuple(tokens[:natives][i::clients]),
            )
            for i in range(clients)
        ),
    )
    answers: list[Answer] = []
    per_worker: list[int] = []
    cpu: dict[str, float] = {}
    streams = stack.stream_worker_pids()
    try:
        await watchers.until(lambda: len(watchers.ready) == clients, 600)
        per_worker = await stack.streams_per_worker()
        rss_connected = {name: sample(pids).rss for name, pids in memory.items()}
        spies = []
        if args.profile:
            # All of the game but its last question; stacks of every service process.
            seconds = (args.questions - 0.5) * (args.answer_window + args.settle + 0.5)
            pids = {"stream": streams, **{n: [s.pid or 0] for n, s in stack.services.items()}}
            for name, group in pids.items():
                spies += await profile(group, seconds, args.profile, f"e2e-{name}", args.native)
        groups = {
            "stream": streams,
            **{name: [service.pid or 0] for name, service in stack.services.items()},
            "envoy": [envoy.pid or 0],
            "watcher_clients": [p.pid or 0 for p in spawned.processes],
            "benchmark_driver": [os.getpid()],
        }
        # The driver alone: every other process here is its child.
        alone = {"benchmark_driver"}
        cpu_before = {name: sample(pids, name not in alone).cpu for name, pids in groups.items()}
        before = sample(streams)
        began = time.perf_counter()
        await game.call(f"/v1/quizzes/{quiz_id}:start", {})
        for question in range(args.questions):
            if question:
                await game.next_question(quiz_id, question)
            answers += await asyncio.gather(
                *(
                    game.answer(
                        quiz_id, question, i, p, random.uniform(0, args.answer_window), state
                    )
                    for i, p in enumerate(players)
                )
            )
            print(
                f"  question {question + 1}/{args.questions} answered "
                f"({time.perf_counter() - began:.1f} s)",
                file=sys.stderr,
            )
            await asyncio.sleep(args.settle)
        try:
            await game.next_question(quiz_id, args.questions)  # closes the quiz
        except HttpError as e:
            # The last question's deadline may have closed the quiz already.
            if e.status != 400:
                raise
        await asyncio.sleep(args.settle)
        elapsed = time.perf_counter() - began
        after = sample(streams)
        rss_after = {name: sample(pids).rss for name, pids in memory.items()}
        cpu = {
            name: round(sample(pids, name not in alone).cpu - cpu_before[name], 1)
            for name, pids in groups.items()
        }
        for spy in spies:
            with contextlib.suppress(Exception):
                await spy.wait()
    finally:
        spawned.stop.set()
        with contextlib.suppress(TimeoutError):
            await watchers.until(lambda: len(watchers.arrivals) == clients, 120, False)
        spawned.queue.put(None)
        spawned.reap()
    if watchers.errors:
        print("watcher errors:", *watchers.errors[:5], sep="\n  ", file=sys.stderr)
    arrivals = [seen for i in sorted(watchers.arrivals) for seen in watchers.arrivals[i][0]]
    accepted = [a for a in answers if a.status == 200]
    to_last, to_first, unseen = visibility(arrivals, accepted)
    messages = sum(m for _, _, m in watchers.arrivals.values())
    watching = max(1, sse_watchers + natives)
    return {
        "players": args.players,
        "questions": args.questions,
        "stream_processes": args.processes,
        "sse_watchers": sse_watchers,
        "native_watchers": natives,
        "answers": len(answers),
        "answers_refused": len(answers) - len(accepted),
        "answer_http_ms": percentiles([(a.answered - a.sent) * 1000 for a in answers]),
        "visible_on_every_watcher_ms": percentiles(to_last),
        "visible_on_first_watcher_ms": percentiles(to_first),
        "answers_not_seen_by_all": unseen,
        "watcher_messages": messages,
        "watcher_errors": len(watchers.errors),
        "watchers_per_stream_process": per_worker,
        "stream_cpu_seconds": round(after.cpu - before.cpu, 2),
        # Where the machine's CPU went during the game (seconds, per process group).
        "cpu_seconds": cpu,
        "stream_rss_mib": round(after.rss / 2**20, 1),
        # KB per watcher (RSS growth / watchers) once connected and after the game.
        "kb_per_watcher": {
            name: {
                "connected": round((rss_connected[name] - rss_before[name]) / watching / 1024, 1),
                "after_game": round((rss_after[name] - rss_before[name]) / watching / 1024, 1),
            }
            for name in memory
        },
        "seconds": round(elapsed, 1),
    }


def table(r: dict[str, Any]) -> str:
    rows = [
        ("answer HTTP round trip", r["answer_http_ms"]),
        ("answer -> every watcher", r["visible_on_every_watcher_ms"]),
        ("answer -> first watcher", r["visible_on_first_watcher_ms"]),
    ]
    head = f"{'ms':<26} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}"
    lines = [
        f"{r['players']} players x {r['questions']} questions, {r['sse_watchers']} SSE + "
        f"{r['native_watchers']} gRPC watchers through Envoy, {r['stream_processes']} "
        f"stream process(es); {r['answers']} answers ({r['answers_refused']} refused), "
        f"{r['watcher_messages']} messages to watchers in {r['seconds']} s",
        head,
        "-" * len(head),
    ]
    for name, p in rows:
        lines.append(
            f"{name:<26} {p.get('p50', '-'):>8} {p.get('p90', '-'):>8} "
            f"{p.get('p99', '-'):>8} {p.get('max', '-'):>8}"
        )
    if r.get("kb_per_watcher"):
        lines.append(
            "KB per watcher (connected / after the game): "
            + ", ".join(
                f"{name} {kb['connected']} / {kb['after_game']}"
                for name, kb in r["kb_per_watcher"].items()
            )
        )
    if r.get("cpu_seconds"):
        lines.append(
            "CPU seconds during the game: "
            + ", ".join(f"{name} {seconds}" for name, seconds in r["cpu_seconds"].items())
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.end_to_end", description=__doc__)
    parser.add_argument("--players", type=int, default=1000)
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument(
        "--sse-watchers", type=int, default=None, help="players watching over SSE (default: all)"
    )
    parser.add_argument(
        "--native-watchers", type=int, default=0, help="players also watching over gRPC"
    )
    parser.add_argument("--processes", type=int, default=1, help="stream service processes")
    parser.add_argument(
        "--upstream-streams",
        type=int,
        default=0,
        help="cap streams per Envoy connection to the stream service (spreads watchers "
        "over SO_REUSEPORT workers); 0: Envoy's default",
    )
    parser.add_argument(
        "--answer-window", type=float, default=5.0, help="players answer within this many s"
    )
    parser.add_argument("--settle", type=float, default=1.5, help="pause after each question")
    parser.add_argument("--clients", type=int, default=2, help="watcher processes")
    parser.add_argument(
        "--http-connections", type=int, default=200, help="players' keep-alive HTTP connections"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--logs", type=Path, default=None, help="keep service and Envoy logs here")
    add_stack_args(parser)
    return parser.parse_args(argv)


if __name__ == "__main__":
    run_cleanly(main(parse_args()))
