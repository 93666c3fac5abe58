"""The set-up the benchmarks share: the servers a run uses and its own part of them (a
Redis key prefix, a NATS prefix and a database, all removed after), QuizMesh services
as their own processes (as `make run` starts them), Envoy in front of them, the
command-line options for the servers, and py-spy recordings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import uvloop
from quizmesh.quiz.v1 import quiz_pb2_grpc

from devstack import infra, scratch
from devstack.services import ServiceProcess
from services.identity.keys import ensure_dev_keys
from services.identity.tokens import Role, TokenIssuer

DEFAULT_MYSQL = "mysql+aiomysql://root@127.0.0.1:3306/test"


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def add_server_args(
    parser: argparse.ArgumentParser, *, sqlite: bool = False, mysql_help: str | None = None
) -> None:
    """--redis, --nats and --mysql (default: the servers on their usual local ports),
    and with `sqlite` a --sqlite switch."""
    parser.add_argument("--redis", default=infra.DEFAULT_REDIS_URL)
    parser.add_argument("--nats", default=infra.DEFAULT_NATS_URL)
    parser.add_argument("--mysql", default=DEFAULT_MYSQL, help=mysql_help)
    if sqlite:
        parser.add_argument("--sqlite", action="store_true", help="SQLite instead of MySQL")


@dataclass(frozen=True)
class Space:
    """A run's own part of the shared servers: Redis keys under `key_prefix`,
    JetStream streams under `nats_prefix` and a database on the MySQL server (an
    SQLite file when `mysql_url` is None). `claim()` creates the database and
    removes all three after."""

    label: str
    redis_url: str
    nats_url: str
    mysql_url: str | None
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @classmethod
    def from_args(cls, label: str, args: argparse.Namespace) -> Space:
        """From add_server_args's options; --sqlite or `--mysql sqlite` mean SQLite."""
        sqlite = getattr(args, "sqlite", False) or args.mysql == "sqlite"
        return cls(label, args.redis, args.nats, None if sqlite else args.mysql)

    @property
    def key_prefix(self) -> str:
        return f"{self.label}{self.tag}:"

    @property
    def nats_prefix(self) -> str:
        return f"{self.label}{self.tag}"

    @contextlib.asynccontextmanager
    async def claim(self, folder: Path | None = None, fallback: bool = False) -> AsyncIterator[str]:
        """The URL of a fresh, migrated database of the run's own: on the MySQL server,
        else SQLite in `folder` (also when MySQL does not answer, with `fallback`).
        On leaving, the database, the Redis keys and the streams are removed."""
        name = f"quizmesh_{self.label}_{self.tag}"
        # SQLite in `folder` when there is no MySQL, or (with fallback) it does not answer.
        fallback_dir = folder if fallback or self.mysql_url is None else None
        try:
            async with scratch.private_database(self.mysql_url, name, fallback_dir) as url:
                yield url
        finally:
            await self.forget()

    async def forget(self) -> None:
        """Deletes the run's Redis keys and JetStream streams."""
        await scratch.forget(self.redis_url, self.nats_url, self.key_prefix, self.nats_prefix)


@dataclass
class ServiceStack:
    """QuizMesh services (`backends`) as processes on a Space of the run's own, their
    token keys and logs in `workdir`; `close()` stops them and removes what they wrote."""

    workdir: Path
    space: Space
    backends: tuple[str, ...] = ("quiz", "score", "leaderboard")
    # Where the services' code is (default: this checkout); for A/B comparisons.
    backend_source: Path | None = None
    database_url: str = ""
    ports: dict[str, int] = field(default_factory=dict)
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    channels: dict[str, grpc.aio.Channel] = field(default_factory=dict)
    _claimed: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    @property
    def signing_key(self) -> Path:
        return self.workdir / "keys" / "signing-key.pem"

    @property
    def jwks(self) -> Path:
        return self.workdir / "keys" / "jwks.json"

    def issuer(self) -> TokenIssuer:
        return TokenIssuer.from_file(self.signing_key, "quizmesh", "quizmesh")

    def host_metadata(self) -> tuple[tuple[str, str], ...]:
        """A quiz host's call metadata."""
        return bearer(self.issuer().issue(Role.HOST, "bench", 3600))

    def env(self, port: int, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {
            **os.environ,
            "QUIZMESH_ENVIRONMENT": "test",
            "QUIZMESH_GRPC_HOST": "127.0.0.1",
            "QUIZMESH_GRPC_PORT": str(port),
            "QUIZMESH_METRICS_PORT": "0",
            "QUIZMESH_REDIS_URL": self.space.redis_url,
            "QUIZMESH_NATS_URL": self.space.nats_url,
            "QUIZMESH_DATABASE_URL": self.database_url,
            "QUIZMESH_KEY_PREFIX": self.space.key_prefix,
            "QUIZMESH_NATS_PREFIX": self.space.nats_prefix,
            "QUIZMESH_JWKS_FILE": str(self.jwks),
            "QUIZMESH_SIGNING_KEY_FILE": str(self.signing_key),
            "QUIZMESH_LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            **(extra or {}),
        }

    def process(
        self,
        name: str,
        port: int,
        env: dict[str, str],
        source: Path | None = None,
        log: str | None = None,
    ) -> ServiceProcess:
        """`python -m services.<name>.server` (from `source`), logging to <log>.log."""
        process = ServiceProcess(name, port, env, log_file=self.workdir / f"{log or name}.log")
        if source is not None:
            process.cwd = source
        return process

    async def start(self) -> None:
        ensure_dev_keys(self.signing_key, self.jwks)
        self.database_url = await self._claimed.enter_async_context(self.space.claim(self.workdir))
        self.ports = {name: infra.free_port() for name in self.backends}
        self.services = {
            name: self.process(name, port, self.env(port), self.backend_source)
            for name, port in self.ports.items()
        }
        await asyncio.gather(*(s.start() for s in self.services.values()))
        for name, port in self.ports.items():
            self.channels[name] = grpc.aio.insecure_channel(f"127.0.0.1:{port}")

    def pid(self, name: str) -> int:
        pid = self.services[name].pid
        assert pid is not None
        return pid

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()
        await asyncio.gather(*(s.stop() for s in self.services.values()))
        await self._claimed.aclose()

    @property
    def quiz(self) -> quiz_pb2_grpc.QuizServiceAsyncStub:
        return quiz_pb2_grpc.QuizServiceStub(self.channels["quiz"])


def py_spy_command() -> str:
    """py-spy beside this Python (the venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy") or "py-spy"


@contextlib.asynccontextmanager
async def py_spy(pid: int, output: Path | None, *options: str) -> AsyncIterator[None]:
    """py-spy recording the process `pid` into `output` (raw collapsed stacks) while
    the block runs, with more py-spy `options` (e.g. "--rate", "500"); no recording
    when `output` is None."""
    if output is None:
        yield
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    spy = await asyncio.create_subprocess_exec(
        py_spy_command(),
        *("record", "--pid", str(pid), "--format", "raw", "--output", str(output), *options),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await asyncio.sleep(1.0)  # attached
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        await spy.wait()


T = TypeVar("T")


def run_cleanly(main: Coroutine[Any, Any, T], *, fast_loop: bool = False) -> T:
    """Runs `main` (on uvloop with `fast_loop`, as the services do), with SIGTERM and
    SIGINT cancelling it so that its cleanup still runs: a benchmark stopped by
    `timeout` or Ctrl-C leaves no service process, database, key or stream behind."""

    async def guarded() -> T:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        return await main

    try:
        return uvloop.run(guarded()) if fast_loop else asyncio.run(guarded())
    except asyncio.CancelledError:
        raise SystemExit("interrupted; what the run had set up is removed") from None
