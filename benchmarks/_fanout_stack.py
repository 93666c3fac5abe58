"""The QuizMesh stack for the fan-out and end-to-end benchmarks: every service as its
own OS process (as `make run` starts them), on the shared Redis, NATS and MySQL
under a key prefix, NATS prefix and database of the run's own, all removed after.

The stream service can be restarted alone (a clean RSS baseline per watcher count)
and can run as several processes, either forked by the service itself on one
SO_REUSEPORT port (QUIZMESH_PROCESSES) or as separate processes on separate ports.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from quizmesh.quiz.v1 import quiz_pb2
from quizmesh.score.v1 import score_pb2, score_pb2_grpc
from redis.asyncio import Redis

from benchmarks._stack import (
    ServiceStack,
    Space,
    add_server_args,
    bearer,
    py_spy_command,
)
from devstack import infra
from devstack.services import ServiceProcess


def add_stack_args(parser: argparse.ArgumentParser) -> None:
    """py-spy, the stream service's environment and code, and the servers: the
    options BenchStack.from_args reads (besides --processes)."""
    parser.add_argument("--profile", type=Path, default=None, help="py-spy output folder")
    parser.add_argument(
        "--native", action="store_true", help="py-spy --native (C frames; pauses the process)"
    )
    parser.add_argument(
        "--stream-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment of the stream service, e.g. GRPC_EXPERIMENTS=fuse_filters",
    )
    parser.add_argument(
        "--stream-source",
        type=Path,
        default=None,
        help="run the stream service from this checkout (A/B comparisons)",
    )
    add_server_args(parser, sqlite=True)


async def profile(
    pids: list[int], seconds: float, folder: Path, label: str, native: bool
) -> list[Any]:
    """py-spy record of each process (e.g. the stream workers) for `seconds`, in the
    background; collapsed stacks in `folder`."""
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    spies = []
    for pid in pids:
        out = folder / f"{label}-{pid}.txt"
        spies.append(
            await asyncio.create_subprocess_exec(
                py_spy_command(),
                *("record", "-p", str(pid), "--duration", str(int(seconds) + 1)),
                *("--rate", "250", "--format", "raw", "-o", str(out)),
                *(("--native",) if native else ("--nonblocking",)),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
        )
    return spies


def _free_ports_in_a_row(count: int) -> int:
    """The first of `count` consecutive ports nothing listens on right now."""
    while True:
        base = infra.free_port()
        if all(infra.port_is_free(base + i) for i in range(1, count)):
            return base


@dataclass(frozen=True)
class Player:
    player_id: str
    token: str


@dataclass(frozen=True)
class ProcessSample:
    """CPU seconds (user + system) and resident memory of a process tree; `main` is
    the CPU of the processes' main threads only (an event loop's thread, which
    bounds how fast one process can fan out; grpc's poller and Python's other
    threads run beside it)."""

    cpu: float
    rss: int
    main: float = 0.0


def sample(pids: Sequence[int], children: bool = True) -> ProcessSample:
    """The processes `pids` (and all their children), summed."""
    cpu = 0.0
    main = 0.0
    rss = 0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            tree = [root, *root.children(recursive=True)] if children else [root]
        except psutil.NoSuchProcess:
            continue
        for process in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = process.cpu_times()
                cpu += times.user + times.system
                rss += process.memory_info().rss
                for thread in process.threads():
                    if thread.id == process.pid:
                        main += thread.user_time + thread.system_time
    return ProcessSample(cpu, rss, main)


@dataclass
class BenchStack(ServiceStack):
    """Every service as its own process; the stream service apart, restartable."""

    # Stream service: how many processes, and whether they share one port.
    stream_processes: int = 1
    stream_shared_port: bool = True
    stream_env: dict[str, str] = field(default_factory=dict)
    # Where the stream service's code is (default: this checkout); for A/B comparisons.
    stream_source: Path | None = None
    stream_ports: list[int] = field(default_factory=list)
    # Each stream worker's /metrics port.
    stream_metrics_ports: list[int] = field(default_factory=list)
    streams: list[ServiceProcess] = field(default_factory=list)

    @classmethod
    def from_args(cls, workdir: Path, args: argparse.Namespace, **options: Any) -> BenchStack:
        """The stack add_stack_args's options ask for."""
        return cls(
            workdir=workdir,
            space=Space.from_args("fanout", args),
            stream_processes=args.processes,
            stream_env=dict(item.split("=", 1) for item in args.stream_env),
            stream_source=args.stream_source,
            **options,
        )

    def env(self, port: int, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        # Every benchmark watcher comes from 127.0.0.1 (and through Envoy, from one
        # client address): the per-client cap on open watches would refuse them.
        return super().env(port, {"QUIZMESH_MAX_STREAMS_PER_CLIENT": "1000000", **(extra or {})})

    async def start(self) -> None:
        await super().start()
        await self.start_stream()

    async def start_stream(self) -> None:
        """The stream service alone (again): a fresh process, a fresh RSS baseline."""
        await self.stop_stream()
        count = self.stream_processes
        if self.stream_shared_port:
            port = infra.free_port()
            self.stream_ports = [port]
            # Workers serve metrics on consecutive ports from the configured one.
            base = _free_ports_in_a_row(count)
            self.stream_metrics_ports = list(range(base, base + count))
            extra = {
                **self.stream_env,
                "QUIZMESH_PROCESSES": str(count),
                "QUIZMESH_METRICS_PORT": str(base),
            }
            self.streams = [
                self.process("stream", port, self.env(port, extra), self.stream_source, "stream")
            ]
        else:
            self.stream_ports = [infra.free_port() for _ in range(count)]
            self.stream_metrics_ports = [infra.free_port() for _ in range(count)]
            self.streams = [
                self.process(
                    "stream",
                    port,
                    self.env(
                        port,
                        {
                            **self.stream_env,
                            "QUIZMESH_PROCESSES": "1",
                            "QUIZMESH_METRICS_PORT": str(self.stream_metrics_ports[i]),
                        },
                    ),
                    self.stream_source,
                    f"stream-{i}",
                )
                for i, port in enumerate(self.stream_ports)
            ]
        await asyncio.gather(*(s.start() for s in self.streams))
        # The forked workers bind the port after the first answers health checks.
        await self.wait_for_stream_workers(seconds=30.0)

    async def wait_for_stream_workers(self, seconds: float) -> None:
        """Until every stream worker listens (forked workers bind after the first
        one already answers health checks)."""
        try:
            async with asyncio.timeout(seconds):
                while True:
                    if len(self.stream_worker_pids()) >= self.stream_processes:
                        return
                    await asyncio.sleep(0.1)
        except TimeoutError:
            raise RuntimeError(f"only {len(self.stream_worker_pids())} stream workers") from None

    def stream_pids(self) -> list[int]:
        return [s.pid for s in self.streams if s.pid is not None]

    def stream_worker_pids(self) -> list[int]:
        """Every stream process that listens on a stream port."""
        listening: list[int] = []
        for pid in self.stream_pids():
            with contextlib.suppress(psutil.NoSuchProcess):
                root = psutil.Process(pid)
                for process in [root, *root.children(recursive=True)]:
                    ports = {
                        c.laddr.port
                        for c in process.net_connections("tcp")
                        if c.status == psutil.CONN_LISTEN
                    }
                    if ports & set(self.stream_ports):
                        listening.append(process.pid)
        return listening

    async def streams_per_worker(self) -> list[int]:
        """Open watch streams on each stream worker (its quizmesh_active_streams)."""
        counts = []
        async with httpx.AsyncClient(timeout=5) as http:
            for port in self.stream_metrics_ports:
                text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
                counts.append(
                    round(
                        sum(
                            float(line.rsplit(" ", 1)[1])
                            for line in text.splitlines()
                            if line.startswith("quizmesh_active_streams{")
                        )
                    )
                )
        return counts

    def connections_per_worker(self) -> list[int]:
        """Established client connections each stream worker holds: with a shared
        SO_REUSEPORT port, how evenly the kernel spread the watchers."""
        counts = []
        for pid in self.stream_worker_pids():
            with contextlib.suppress(psutil.NoSuchProcess):
                counts.append(
                    sum(
                        1
                        for c in psutil.Process(pid).net_connections("tcp")
                        if c.status == psutil.CONN_ESTABLISHED and c.laddr.port in self.stream_ports
                    )
                )
        return counts

    async def stop_stream(self) -> None:
        for process in self.streams:
            await process.stop()
        self.streams = []

    async def close(self) -> None:
        await self.stop_stream()
        await super().close()

    # The game, over native gRPC.

    @property
    def score(self) -> score_pb2_grpc.ScoreServiceAsyncStub:
        return score_pb2_grpc.ScoreServiceStub(self.channels["score"])

    async def create_quiz(self, questions: int, time_limit_ms: int = 600_000) -> str:
        created = await self.quiz.CreateQuiz(
            quiz_pb2.CreateQuizRequest(
                title="bench",
                questions=[
                    quiz_pb2.QuestionSpec(
                        text=f"question {i}",
                        choices=["a", "b", "c", "d"],
                        correct_choice=i % 4,
                        points=1000,
                        time_limit_ms=time_limit_ms,
                    )
                    for i in range(questions)
                ],
            ),
            metadata=self.host_metadata(),
        )
        return str(created.quiz.quiz_id)

    async def join(self, quiz_id: str, count: int, concurrency: int = 32) -> list[Player]:
        limit = asyncio.Semaphore(concurrency)

        async def one(i: int) -> Player:
            async with limit:
                joined = await self.quiz.JoinQuiz(
                    quiz_pb2.JoinQuizRequest(quiz_id=quiz_id, nickname=f"player{i}")
                )
            return Player(joined.player_id, joined.player_token)

        return list(await asyncio.gather(*(one(i) for i in range(count))))

    async def start_quiz(self, quiz_id: str) -> None:
        await self.quiz.StartQuiz(
            quiz_pb2.StartQuizRequest(quiz_id=quiz_id), metadata=self.host_metadata()
        )

    async def advance(self, quiz_id: str) -> None:
        """To the next question: an open one is ended (revealed) first."""
        request = quiz_pb2.AdvanceQuestionRequest(quiz_id=quiz_id)
        before = (await self.quiz.GetQuiz(quiz_pb2.GetQuizRequest(quiz_id=quiz_id))).quiz
        ended = await self.quiz.AdvanceQuestion(request, metadata=self.host_metadata())
        if ended.quiz.current_question == before.current_question:
            await self.quiz.AdvanceQuestion(request, metadata=self.host_metadata())

    async def answer(self, quiz_id: str, player: Player, question: int, choice: int) -> None:
        await self.score.SubmitAnswer(
            score_pb2.SubmitAnswerRequest(
                quiz_id=quiz_id, question_index=question, choice_index=choice
            ),
            metadata=bearer(player.token),
        )


async def board_version(redis_url: str, key_prefix: str, quiz_id: str) -> int:
    """The quiz's board version in Redis (every accepted answer bumps it)."""
    from services.live.keys import QuizKeys

    redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        return int(await redis.hget(QuizKeys(key_prefix, quiz_id).state, "version") or 0)
    finally:
        await redis.aclose()
