"""The stadium scale model (issue 14, item 7): one quiz of 1,000,000 enrolled players.

    .venv/bin/python -m benchmarks.stadium --players 1000000     # ~2.5 minutes
    .venv/bin/python -m benchmarks.stadium --players 20000 --sse-watchers 100 \\
        --native-watchers 200 --seconds 8                        # quick

Every service runs as its own process (as `make run` starts them), the stream
service as two SO_REUSEPORT processes, behind a real Envoy, on the shared Redis, NATS
and MariaDB under names of the run's own that are removed after. The players are
enrolled in bulk (`QuizStore.enrol_players`, as benchmarks/leaderboard_scale.py
does) into a quiz with instant feedback, so that each answer moves the board at
once (without it the board moves only at the question's close). Then, for
--seconds:
- answers through the real score path (native SubmitAnswer, closed loop, as fast as
  this machine carries: the load workers of benchmarks/intake.py);
- real watchers: SSE through Envoy and native gRPC straight to the stream
  processes (_stadium_watchers.py). Each watching player answers once, correctly,
  at a random moment; answer -> own rank visible is from that SubmitAnswer's reply
  to the first frame whose `you` shows the points;
- the own ranks of all players per snapshot. The ~1,000,000 players not connected
  are ranked by the stream service's own code in a process of their own
  (_stadium_ranks.py: BoardCopy kept level from the BoardUpdates plus
  Standings.yours for every player id, at the hub's board pace) and counted, not
  sent: one process ranking everyone is what the rank work of a stadium costs in
  total, whichever stream processes it is spread over, and it needs no hook in the
  service. Like a hub it ranks at most once per board interval and skips boards
  that arrive while it ranks; the report says how many it ranked. The real
  watchers are ranked by the stream processes themselves.

CPU is read per process with psutil over the window (Redis, NATS and MariaDB are
this machine's shared servers: other work on them counts too). Prints, per answer
and per snapshot, each component's CPU; the visibility percentiles; then the
capacity model of _stadium_plan.py, and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import multiprocessing
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
from quizmesh.quiz.v1 import quiz_pb2
from quizmesh.score.v1 import score_pb2
from redis.asyncio import Redis

from benchmarks import _stadium_plan as plan
from benchmarks import _stadium_ranks as ranks
from benchmarks import _stadium_watchers as watching
from benchmarks._fanout_stack import BenchStack, Player, sample
from benchmarks._fanout_watchers import SPAWN, ClientProcesses, Report
from benchmarks._intake_load import Phase, PhaseResult, QuizPlan, WorkerSpec, worker_main
from benchmarks._stack import Space, add_server_args, bearer, run_cleanly
from benchmarks.intake import cpu_seconds, listener
from benchmarks.leaderboard_scale import Progress
from devstack.gateway import EnvoyProcess, local_gateway, write_envoy_config
from services.database.engine import create_engine
from services.identity.tokens import Role
from services.live.keys import QuizKeys
from services.live.quizzes import LiveQuizzes
from services.quiz.joining import Joining
from services.quiz.store import QuizStore
from services.stream.config import Settings as StreamSettings

TIME_LIMIT_MS = 600_000  # the longest a question may last: it stays open all run
BOARD_INTERVAL = float(StreamSettings.model_fields["board_interval_seconds"].default)


class Inbox:
    """Reports of spawned processes, moved from their queue onto our loop."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue
        self.reports: list[Report] = []
        self.loop = asyncio.get_running_loop()
        self.changed = asyncio.Event()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        while (report := self.queue.get()) is not None:
            self.loop.call_soon_threadsafe(self._take, report)

    def _take(self, report: Report) -> None:
        self.reports.append(report)
        self.changed.set()

    def of(self, kind: str) -> list[Report]:
        return [r for r in self.reports if r[0] == kind]

    async def until(self, condition: Callable[[], bool], seconds: float) -> None:
        async with asyncio.timeout(seconds):
            while not condition():
                if errors := self.of("error"):
                    raise RuntimeError("; ".join(str(e[1:]) for e in errors[:3]))
                self.changed.clear()
                await self.changed.wait()


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="quizmesh-stadium-") as folder:
        workdir = args.logs or Path(folder)
        workdir.mkdir(parents=True, exist_ok=True)
        stack = BenchStack(
            workdir=workdir,
            space=Space.from_args("stadium", args),
            stream_processes=args.processes,
        )
        envoy: EnvoyProcess | None = None
        try:
            await stack.start()
            upstreams = {name: f"127.0.0.1:{port}" for name, port in stack.ports.items()}
            upstreams["stream"] = f"127.0.0.1:{stack.stream_ports[0]}"
            config = write_envoy_config(
                workdir / "envoy.yaml", local_gateway(upstreams, stack.jwks)
            )
            envoy = EnvoyProcess(config, log_file=workdir / "envoy.log")
            await envoy.start()
            result = await stadium(args, stack, envoy)
        finally:
            if envoy is not None:
                await envoy.stop()
            await stack.close()
    print(plan.report(result))
    print(json.dumps({"benchmark": "stadium", **result}))


async def create_quiz(stack: BenchStack) -> str:
    created = await stack.quiz.CreateQuiz(
        quiz_pb2.CreateQuizRequest(
            title="stadium",
            questions=[
                quiz_pb2.QuestionSpec(
                    text="q", choices=["a", "b", "c"], correct_choice=0, time_limit_ms=TIME_LIMIT_MS
                )
            ],
            instant_feedback=True,
        ),
        metadata=stack.host_metadata(),
    )
    return str(created.quiz.quiz_id)


async def enrol(stack: BenchStack, quiz_id: str, players: int) -> tuple[list[str], float]:
    """Every player through the bulk path, then the quiz started and the board's
    `changed` set (all of them, from the joins) taken by the leaderboard, so that the
    window starts from a level board. The ids, and the enrolment's seconds."""
    engine = create_engine(stack.database_url)
    redis = Redis.from_url(stack.space.redis_url, decode_responses=True)
    try:
        joining = Joining(QuizStore(engine), LiveQuizzes(redis, stack.space.key_prefix))
        began = time.perf_counter()
        names = [f"p{i}" for i in range(players)]
        ids = await joining.enrol(quiz_id, names, progress=Progress("bulk enrolment", players))
        seconds = time.perf_counter() - began
        # Started, the quiz's lifecycle event has the leaderboard take the joins.
        await stack.start_quiz(quiz_id)
        changed = QuizKeys(stack.space.key_prefix, quiz_id).changed
        async with asyncio.timeout(180):
            while await redis.scard(changed):  # noqa: ASYNC110 (Redis has no event for it)
                await asyncio.sleep(0.5)
        return ids, seconds
    finally:
        await redis.aclose()
        await engine.dispose()


def start_load(
    args: argparse.Namespace,
    quiz_id: str,
    host_token: str,
    players: list[tuple[str, str]],
    quiz_target: str,
) -> tuple[list[Connection], list[BaseProcess]]:
    """The intake benchmark's load workers, each answering for its own players."""
    conns: list[Connection] = []
    procs: list[BaseProcess] = []
    for i in range(args.load_workers):
        mine = tuple(players[i :: args.load_workers])
        parent, child = SPAWN.Pipe()
        spec = WorkerSpec(i, (QuizPlan(quiz_id, host_token, 1, mine),), quiz_target)
        proc = SPAWN.Process(target=worker_main, args=(spec, child), daemon=True)
        proc.start()
        conns.append(parent)
        procs.append(proc)
    return conns, procs


async def watched_answers(
    stack: BenchStack, quiz_id: str, tokens: list[str], seconds: float
) -> list[float | None]:
    """Each watching player answers once, correctly, at a random moment of the window;
    the wall time of each reply (None: refused)."""
    request = score_pb2.SubmitAnswerRequest(quiz_id=quiz_id, question_index=0, choice_index=0)

    async def one(token: str) -> float | None:
        await asyncio.sleep(random.uniform(0.5, max(0.6, seconds - 1.5)))
        try:
            await stack.score.SubmitAnswer(request, metadata=bearer(token), timeout=10)
        except grpc.aio.AioRpcError:
            return None
        return time.time()

    return list(await asyncio.gather(*(one(t) for t in tokens)))


def cpu_groups(stack: BenchStack, envoy: EnvoyProcess) -> dict[str, Callable[[], float]]:
    """Each component's CPU seconds so far (a process and its children)."""
    shared = {
        "redis": listener("redis-server", urlsplit(stack.space.redis_url).port or 6379),
        "nats": listener("nats-server", urlsplit(stack.space.nats_url).port or 4222),
        "mariadb": listener("mariadbd", 3306) or listener("mysqld", 3306),
    }
    groups: dict[str, Callable[[], float]] = {
        name: functools.partial(cpu_seconds, process) for name, process in shared.items()
    }
    for name in ("score", "leaderboard", "quiz"):
        groups[name] = functools.partial(tree_cpu, [stack.pid(name)])
    for i, pid in enumerate(sorted(stack.stream_worker_pids())):
        # The workers are forked by the first: each counted alone.
        groups[f"stream-{i}"] = functools.partial(tree_cpu, [pid], children=False)
    groups["envoy"] = functools.partial(tree_cpu, [envoy.pid or 0])
    return groups


def tree_cpu(pids: list[int], children: bool = True) -> float:
    return sample(pids, children).cpu


async def stadium(
    args: argparse.Namespace, stack: BenchStack, envoy: EnvoyProcess
) -> dict[str, Any]:
    random.seed(args.seed)
    quiz_id = await create_quiz(stack)
    print(f"stadium: quiz {quiz_id}, enrolling {args.players:,} players", file=sys.stderr)
    player_ids, enrol_seconds = await enrol(stack, quiz_id, args.players)
    issuer = stack.issuer()

    def token(pid: str) -> str:
        return issuer.issue(Role.PLAYER, pid, 7200, quiz_id)

    watchers = args.sse_watchers + args.native_watchers
    answerers = min(args.answerers, args.players - watchers)
    watcher_tokens = [token(pid) for pid in player_ids[:watchers]]
    load_players = [(pid, token(pid)) for pid in player_ids[watchers : watchers + answerers]]

    spawned = ClientProcesses()
    inbox = Inbox(spawned.queue)
    ranker = SPAWN.Process(
        target=ranks.main,
        args=(
            ranks.RankerSpec(
                stack.space.redis_url,
                stack.space.nats_url,
                stack.space.key_prefix,
                stack.space.nats_prefix,
                quiz_id,
                tuple(player_ids),
                BOARD_INTERVAL,
            ),
            spawned.queue,
            spawned.stop,
        ),
        daemon=True,
    )
    ranker.start()
    sse_tokens, native_tokens = (
        watcher_tokens[: args.sse_watchers],
        watcher_tokens[args.sse_watchers :],
    )
    clients = args.clients
    spawned.start(
        watching.main,
        (
            watching.StadiumWatcherSpec(
                index=i,
                quiz_id=quiz_id,
                envoy=("127.0.0.1", envoy.port),
                stream=("127.0.0.1", stack.stream_ports[0]),
                sse_tokens=tuple(sse_tokens[i::clients]),
                native_tokens=tuple(native_tokens[i::clients]),
            )
            for i in range(clients)
        ),
    )
    score_target = f"127.0.0.1:{stack.ports['score']}"
    host_token = issuer.issue(Role.HOST, "bench", 7200)
    quiz_target = f"127.0.0.1:{stack.ports['quiz']}"
    conns, load = start_load(args, quiz_id, host_token, load_players, quiz_target)
    try:
        await inbox.until(lambda: len(inbox.of("ready")) == clients, 600)
        per_worker = await stack.streams_per_worker()
        # Copies are level from the first update after their read: answers until the
        # ranker has ranked everyone once (its nicknames read, as a hub's first round).
        while not inbox.of("ranker-ready"):
            player_id, player_token = load_players.pop()
            await stack.answer(quiz_id, Player(player_id, player_token), 0, 1)
            with contextlib.suppress(TimeoutError):
                await inbox.until(lambda: bool(inbox.of("ranker-ready")), 0.5)
        print("stadium: watchers and ranker ready; answering", file=sys.stderr)
        groups = cpu_groups(stack, envoy)
        others = {
            "unconnected ranks": [ranker.pid or 0],
            "watcher clients": [p.pid or 0 for p in spawned.processes],
            "load generators": [p.pid or 0 for p in load],
        }
        for name, pids in others.items():
            groups[name] = functools.partial(tree_cpu, pids)
        groups["driver"] = functools.partial(tree_cpu, [os.getpid()], children=False)
        start_at = time.time() + 1.0
        phase = Phase("grpc", score_target, start_at, 0.0, args.seconds, args.concurrency)
        for conn in conns:
            conn.send(phase)
        await asyncio.sleep(start_at - time.time())
        before = {name: read() for name, read in groups.items()}
        acks = await watched_answers(stack, quiz_id, sse_tokens + native_tokens, args.seconds)
        await asyncio.sleep(max(0.0, start_at + args.seconds - time.time()))
        window = (start_at, time.time())
        cpu = {name: read() - before[name] for name, read in groups.items()}
        results: list[PhaseResult] = [await asyncio.to_thread(c.recv) for c in conns]
        await asyncio.sleep(args.settle)  # the last answers' frames
    finally:
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.send(None)
        spawned.stop.set()
        with contextlib.suppress(TimeoutError):
            await inbox.until(
                lambda: len(inbox.of("scored")) == clients and bool(inbox.of("ranks")), 120
            )
        spawned.queue.put(None)
        spawned.reap()
        ranker.join(10)
        for proc in load:
            proc.join(10)
    scored = {r[1]: r for r in inbox.of("scored")}
    visible, unseen = visibility(acks, len(sse_tokens), clients, scored)
    messages = [0, 0]
    for r in scored.values():
        for second, counts in r[5].items():
            if window[0] <= second + 0.5 <= window[1]:
                messages[0] += counts[0]
                messages[1] += counts[1]
    refused: dict[str, int] = {}
    for result in results:
        for reason, count in result.errors.items():
            refused[reason] = refused.get(reason, 0) + count
    return plan.figures(
        plan.Run(
            options={k: v for k, v in vars(args).items() if k != "logs"},
            enrol_seconds=enrol_seconds,
            window=window,
            cpu=cpu,
            answers=sum(r.completed for r in results) + sum(a is not None for a in acks),
            refused=refused,
            visible_ms=visible,
            unseen=unseen,
            messages=(messages[0], messages[1]),
            ranker=tuple(inbox.of("ranks")[0][1:]),  # type: ignore[arg-type]
            board_interval=BOARD_INTERVAL,
            per_worker=per_worker,
        )
    )


def visibility(
    acks: list[float | None], sse: int, clients: int, scored: dict[int, Report]
) -> tuple[dict[str, list[float]], int]:
    """Per kind of watcher, ms from each watched answer's reply to the first frame
    showing its points; and how many answers no frame showed. Watcher client i held
    SSE watchers i, i + clients, ... then native ones the same way (stadium())."""
    visible: dict[str, list[float]] = {"sse": [], "native": []}
    unseen = 0
    natives = len(acks) - sse
    for i in range(clients):
        mine = [*range(i, sse, clients), *(sse + j for j in range(i, natives, clients))]
        seen = scored[i][2] if i in scored else [None] * len(mine)
        for index, first in zip(mine, seen, strict=True):
            ack = acks[index]
            if ack is None:
                continue
            if first is None:
                unseen += 1
                continue
            visible["sse" if index < sse else "native"].append((first[0] - ack) * 1000)
    return visible, unseen


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stadium", description=__doc__)
    parser.add_argument("--players", type=int, default=1_000_000, help="enrolled players")
    parser.add_argument("--seconds", type=float, default=30.0, help="the answering window")
    parser.add_argument("--sse-watchers", type=int, default=600, help="through Envoy")
    parser.add_argument("--native-watchers", type=int, default=1_400, help="gRPC, direct")
    parser.add_argument("--processes", type=int, default=2, help="stream service processes")
    parser.add_argument("--clients", type=int, default=2, help="watcher client processes")
    parser.add_argument("--load-workers", type=int, default=2, help="answer load processes")
    parser.add_argument("--concurrency", type=int, default=48, help="answers in flight each")
    parser.add_argument(
        "--answerers", type=int, default=100_000, help="players the load may answer for"
    )
    parser.add_argument("--settle", type=float, default=3.0, help="wait after the window")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--logs", type=Path, default=None, help="keep service logs here")
    add_server_args(parser)
    return parser.parse_args(argv)


if __name__ == "__main__":
    multiprocessing.set_start_method("spawn", force=True)
    run_cleanly(main(parse_args()))
