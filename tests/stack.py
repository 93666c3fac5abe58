"""Starts QuizMesh for tests: the four services in-process on free ports, with
their own key prefix, NATS prefix and database, against real Redis/NATS/SQL."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from quizmesh.leaderboard.v1 import leaderboard_pb2_grpc
from quizmesh.quiz.v1 import quiz_pb2_grpc
from quizmesh.score.v1 import score_pb2_grpc
from quizmesh.stream.v1 import stream_pb2_grpc

from devstack import scratch
from services.identity.tokens import Role, TokenIssuer
from services.leaderboard import server as leaderboard_server
from services.leaderboard.config import Settings as LeaderboardSettings
from services.mesh.app import ServiceApp
from services.quiz import server as quiz_server
from services.quiz.config import Settings as QuizSettings
from services.score import server as score_server
from services.score.config import Settings as ScoreSettings
from services.stream import server as stream_server
from services.stream.config import Settings as StreamSettings


@dataclass(frozen=True)
class Backends:
    """Where the real servers are, and the token keys tests sign with."""

    redis_url: str
    nats_url: str
    # The MySQL/MariaDB server (its admin URL) that holds database_url's database.
    mysql_server_url: str
    database_url: str
    jwks_file: Path
    signing_key_file: Path

    def issuer(self) -> TokenIssuer:
        return TokenIssuer.from_file(self.signing_key_file, "quizmesh", "quizmesh")


@dataclass
class Stack:
    backends: Backends
    key_prefix: str
    nats_prefix: str
    apps: dict[str, ServiceApp] = field(default_factory=dict)
    channels: dict[str, grpc.aio.Channel] = field(default_factory=dict)

    def common(self) -> dict[str, Any]:
        b = self.backends
        return {
            "environment": "test",
            "grpc_port": 0,
            "metrics_port": 0,
            "redis_url": b.redis_url,
            "nats_url": b.nats_url,
            "database_url": b.database_url,
            "key_prefix": self.key_prefix,
            "nats_prefix": self.nats_prefix,
            "jwks_file": b.jwks_file,
            "signing_key_file": b.signing_key_file,
            "shutdown_grace_seconds": 2.0,
            # Every test signs hosts up from 127.0.0.1; tests/test_accounts.py checks
            # the limit on a server of its own.
            "sign_ups_per_address": 10_000,
        }

    def port(self, service: str) -> int:
        return self.apps[service].port

    def metrics_url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.apps[service].metrics_port}/metrics"

    @property
    def quiz(self) -> quiz_pb2_grpc.QuizServiceAsyncStub:
        return quiz_pb2_grpc.QuizServiceStub(self.channels["quiz"])

    @property
    def score(self) -> score_pb2_grpc.ScoreServiceAsyncStub:
        return score_pb2_grpc.ScoreServiceStub(self.channels["score"])

    @property
    def leaderboard(self) -> leaderboard_pb2_grpc.LeaderboardServiceAsyncStub:
        return leaderboard_pb2_grpc.LeaderboardServiceStub(self.channels["leaderboard"])

    @property
    def stream(self) -> stream_pb2_grpc.StreamServiceAsyncStub:
        return stream_pb2_grpc.StreamServiceStub(self.channels["stream"])

    def host_token(self, name: str = "alice") -> str:
        return self.backends.issuer().issue(Role.HOST, name, 3600)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def start_service(stack: Stack, name: str, **overrides: Any) -> ServiceApp:
    settings = {**stack.common(), **overrides}
    match name:
        case "quiz":
            app = await quiz_server.create_server(QuizSettings(**settings))
        case "score":
            app = await score_server.create_server(ScoreSettings(**settings))
        case "leaderboard":
            app = await leaderboard_server.create_server(LeaderboardSettings(**settings))
        case "stream":
            app = await stream_server.create_server(StreamSettings(**settings))
        case _:
            raise ValueError(name)
    await app.start()
    stack.apps[name] = app
    old = stack.channels.pop(name, None)
    if old is not None:
        await old.close()
    stack.channels[name] = grpc.aio.insecure_channel(f"127.0.0.1:{app.port}")
    return app


@contextlib.asynccontextmanager
async def running_stack(backends: Backends, **overrides: Any) -> AsyncIterator[Stack]:
    """All four services on free ports; everything they created is removed after."""
    tag = uuid.uuid4().hex[:10]
    stack = Stack(backends, key_prefix=f"t{tag}:", nats_prefix=f"t{tag}")
    try:
        for name in ("quiz", "score", "leaderboard", "stream"):
            await start_service(stack, name, **overrides)
        yield stack
    finally:
        for name, app in stack.apps.items():
            async with _reporting_if_slow(f"stopping the {name} service"):
                await app.stop(1.0)
        for channel in stack.channels.values():
            await channel.close()
        await forget(backends, stack.key_prefix, stack.nats_prefix)


@contextlib.asynccontextmanager
async def _reporting_if_slow(doing: str, seconds: float = 20.0) -> AsyncIterator[None]:
    """Prints every task's stack when `doing` takes longer than it ever should, so a
    hang in teardown says where it is before pytest-timeout ends it."""

    async def report() -> None:
        await asyncio.sleep(seconds)
        print(f"\n{doing} has taken over {seconds:g} s; tasks:", file=sys.stderr)
        for task in asyncio.all_tasks():
            task.print_stack(file=sys.stderr)

    reporter = asyncio.create_task(report())
    try:
        yield
    finally:
        reporter.cancel()


async def forget(backends: Backends, key_prefix: str, nats_prefix: str) -> None:
    """Deletes a test's Redis keys and JetStream streams."""
    await scratch.forget(backends.redis_url, backends.nats_url, key_prefix, nats_prefix)
