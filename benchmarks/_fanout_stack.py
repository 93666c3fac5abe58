"""The QuizMesh stack for the fan-out and end-to-end benchmarks: every service as its
own OS process (as `make run` starts them), on the shared Redis, NATS and MySQL
under a key prefix, NATS prefix and database of the run's own, all removed after.

The stream service can be restarted alone (a clean RSS baseline per watcher count)
and can run as several processes, either forked by the service itself on one
SO_REUSEPORT port (QUIZMESH_PROCESSES) or as separate processes on separate ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import nats
import psutil
from quizmesh.quiz.v1 import quiz_pb2, quiz_pb2_grpc
from quizmesh.score.v1 import score_pb2, score_pb2_grpc
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.engine import make_url

from devstack import infra
from devstack.run import ServiceProcess
from services.core.auth import Role, TokenIssuer, ensure_dev_keys
from services.core.messaging import Subjects
from services.database.engine import create_engine
from services.database.migrate import upgrade

DEFAULT_MYSQL = "mysql+aiomysql://root@127.0.0.1:3306/test"
BACKENDS = ("quiz", "score", "leaderboard")


def run(main: Coroutine[Any, Any, None]) -> None:
    """asyncio.run, with SIGTERM/SIGINT cancelling `main` so that its cleanup (stop
    the services, delete keys, streams and database) still runs."""

    async def guarded() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        await main

    asyncio.run(guarded())


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
                str(Path(sys.executable).with_name("py-spy")),
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


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


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
class BenchStack:
    workdir: Path
    redis_url: str
    nats_url: str
    mysql_url: str | None
    # Stream service: how many processes, and whether they share one port.
    stream_processes: int = 1
    stream_shared_port: bool = True
    stream_env: dict[str, str] = field(default_factory=dict)
    # Where the services' code is (default: this checkout); for A/B comparisons.
    stream_source: Path | None = None
    backend_source: Path | None = None
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    database_url: str = ""
    ports: dict[str, int] = field(default_factory=dict)
    stream_ports: list[int] = field(default_factory=list)
    # Each stream worker's /metrics port.
    stream_metrics_ports: list[int] = field(default_factory=list)
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    streams: list[ServiceProcess] = field(default_factory=list)
    channels: dict[str, grpc.aio.Channel] = field(default_factory=dict)
    _database: str | None = None

    @property
    def key_prefix(self) -> str:
        return f"fanout{self.tag}:"

    @property
    def nats_prefix(self) -> str:
        return f"fanout{self.tag}"

    @property
    def signing_key(self) -> Path:
        return self.workdir / "keys" / "signing-key.pem"

    @property
    def jwks(self) -> Path:
        return self.workdir / "keys" / "jwks.json"

    def issuer(self) -> TokenIssuer:
        return TokenIssuer.from_file(self.signing_key, "quizmesh", "quizmesh")

    def env(self, port: int, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {
            **os.environ,
            "QUIZMESH_ENVIRONMENT": "test",
            "QUIZMESH_GRPC_HOST": "127.0.0.1",
            "QUIZMESH_GRPC_PORT": str(port),
            "QUIZMESH_METRICS_PORT": "0",
            "QUIZMESH_REDIS_URL": self.redis_url,
            "QUIZMESH_NATS_URL": self.nats_url,
            "QUIZMESH_DATABASE_URL": self.database_url,
            "QUIZMESH_KEY_PREFIX": self.key_prefix,
            "QUIZMESH_NATS_PREFIX": self.nats_prefix,
            "QUIZMESH_JWKS_FILE": str(self.jwks),
            "QUIZMESH_SIGNING_KEY_FILE": str(self.signing_key),
            "QUIZMESH_LOG_LEVEL": "WARNING",
            # Every benchmark watcher comes from 127.0.0.1 (and through Envoy, from
            # one client address): the per-client cap on open watches would refuse them.
            "QUIZMESH_MAX_STREAMS_PER_CLIENT": "1000000",
            "PYTHONUNBUFFERED": "1",
            **(extra or {}),
        }

    async def start(self) -> None:
        ensure_dev_keys(self.signing_key, self.jwks)
        await self._create_database()
        self.ports = {name: infra.free_port() for name in BACKENDS}
        self.services = {
            name: self._process(name, port, self.env(port), self.backend_source, name)
            for name, port in self.ports.items()
        }
        await asyncio.gather(*(s.start() for s in self.services.values()))
        for name, port in self.ports.items():
            self.channels[name] = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
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
                self._process("stream", port, self.env(port, extra), self.stream_source, "stream")
            ]
        else:
            self.stream_ports = [infra.free_port() for _ in range(count)]
            self.stream_metrics_ports = [infra.free_port() for _ in range(count)]
            self.streams = [
                self._process(
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

    def _process(
        self, name: str, port: int, env: dict[str, str], source: Path | None, log: str
    ) -> ServiceProcess:
        process = ServiceProcess(name, port, env, log_file=self.workdir / f"{log}.log")
        if source is not None:
            process.cwd = source
        return process

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
        for channel in self.channels.values():
            await channel.close()
        await self.stop_stream()
        await asyncio.gather(*(s.stop() for s in self.services.values()))
        await self._forget()

    async def _create_database(self) -> None:
        if self.mysql_url is None:
            self.database_url = f"sqlite+aiosqlite:///{self.workdir / 'quizmesh.db'}"
        else:
            self._database = f"quizmesh_fanout_{self.tag}"
            admin = create_engine(self.mysql_url)
            try:
                async with admin.connect() as conn:
                    await conn.execute(text(f"CREATE DATABASE `{self._database}`"))
            finally:
                await admin.dispose()
            self.database_url = (
                make_url(self.mysql_url)
                .set(database=self._database)
                .render_as_string(hide_password=False)
            )
        await upgrade(self.database_url)

    async def _forget(self) -> None:
        """Removes the run's Redis keys, JetStream streams and database."""
        redis = Redis.from_url(self.redis_url)
        try:
            async for key in redis.scan_iter(match=f"{self.key_prefix}*", count=1000):
                await redis.delete(key)
        finally:
            await redis.aclose()
        nc = await nats.connect(self.nats_url)
        try:
            js = nc.jetstream()
            subjects = Subjects(self.nats_prefix)
            for stream in (subjects.events_stream, subjects.answers_stream):
                with contextlib.suppress(Exception):
                    await js.delete_stream(stream)
        finally:
            await nc.close()
        if self._database is not None and self.mysql_url is not None:
            admin = create_engine(self.mysql_url)
            try:
                async with admin.connect() as conn:
                    await conn.execute(text(f"DROP DATABASE IF EXISTS `{self._database}`"))
            finally:
                await admin.dispose()

    # The game, over native gRPC.

    @property
    def quiz(self) -> quiz_pb2_grpc.QuizServiceStub:
        return quiz_pb2_grpc.QuizServiceStub(self.channels["quiz"])

    @property
    def score(self) -> score_pb2_grpc.ScoreServiceStub:
        return score_pb2_grpc.ScoreServiceStub(self.channels["score"])

    async def create_quiz(self, questions: int, time_limit_ms: int = 600_000) -> str:
        host = self.issuer().issue(Role.HOST, "bench", 3600)
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
            metadata=bearer(host),
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
        host = self.issuer().issue(Role.HOST, "bench", 3600)
        await self.quiz.StartQuiz(quiz_pb2.StartQuizRequest(quiz_id=quiz_id), metadata=bearer(host))

    async def advance(self, quiz_id: str) -> None:
        host = self.issuer().issue(Role.HOST, "bench", 3600)
        await self.quiz.AdvanceQuestion(
            quiz_pb2.AdvanceQuestionRequest(quiz_id=quiz_id), metadata=bearer(host)
        )

    async def answer(self, quiz_id: str, player: Player, question: int, choice: int) -> None:
        await self.score.SubmitAnswer(
            score_pb2.SubmitAnswerRequest(
                quiz_id=quiz_id, question_index=question, choice_index=choice
            ),
            metadata=bearer(player.token),
        )


async def board_version(redis_url: str, key_prefix: str, quiz_id: str) -> int:
    """The quiz's board version in Redis (every accepted answer bumps it)."""
    from services.core.board import QuizKeys

    redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        return int(await redis.hget(QuizKeys(key_prefix, quiz_id).state, "version") or 0)
    finally:
        await redis.aclose()
