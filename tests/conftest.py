"""Fixtures layered as backends -> stack -> stubs/gateway.

The suite uses the Redis, NATS and MySQL/MariaDB at QUIZMESH_TEST_REDIS_URL,
QUIZMESH_TEST_NATS_URL and QUIZMESH_TEST_MYSQL_URL (defaults: the usual local
ports) when they answer, and otherwise starts private ones: valkey, nats-server
and MariaDB (Debian's mariadb-server, `make mariadb`; never SQLite in its place).
The summary at the end says which were used. Every test session keeps to its own
database, key prefix and stream names and removes them after.
"""

from __future__ import annotations

import contextlib
import dataclasses
import faulthandler
import os
import sys
import uuid
from collections.abc import AsyncIterator

import httpx
import nats
import pytest
from nats.aio.client import Client as NatsClient
from redis.asyncio import Redis

from devstack import infra, mariadb, scratch
from devstack.gateway import REPO, EnvoyProcess, local_gateway, write_envoy_config
from services.identity.keys import ensure_dev_keys
from tests.api import Api, GrpcApi, HttpApi
from tests.stack import Backends, Stack, forget, running_stack

DEFAULT_MYSQL = "mysql+aiomysql://root@127.0.0.1:3306/test"


# After the run, the interpreter must exit within this long.
EXIT_SECONDS = 60


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """A run whose teardown left something that blocks the interpreter's exit (a
    thread, an atexit handler, a task that will not be cancelled) ends within a
    minute with exit code 1 and every thread's stack, instead of holding CI until
    its own timeout."""
    faulthandler.dump_traceback_later(EXIT_SECONDS, exit=True, file=sys.__stderr__ or 2)


# Which servers the run used ("Redis: redis://... (private)"), for the summary.
SERVERS_USED: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SERVERS_USED:
        terminalreporter.write_sep("-", "servers used")
        for line in SERVERS_USED:
            terminalreporter.write_line(line)


def private_database(
    server_url: str, *, migrate: bool = True
) -> contextlib.AbstractAsyncContextManager[str]:
    """A fresh database of our own (migrated unless told not to) on the MySQL
    server at `server_url`."""
    name = f"quizmesh_test_{uuid.uuid4().hex[:10]}"
    return scratch.private_database(server_url, name, None, migrate=migrate)


async def _configured_or_private(
    stack: contextlib.AsyncExitStack,
    kind: str,
    configured: str,
    chosen: contextlib.AbstractAsyncContextManager[str],
) -> str:
    url = await stack.enter_async_context(chosen)
    SERVERS_USED.append(f"{kind}: {url} ({'configured' if url == configured else 'private'})")
    return url


@pytest.fixture(scope="session")
async def backends(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Backends]:
    keys = tmp_path_factory.mktemp("keys")
    ensure_dev_keys(keys / "signing-key.pem", keys / "jwks.json")
    redis = os.environ.get("QUIZMESH_TEST_REDIS_URL", infra.DEFAULT_REDIS_URL)
    nats_ = os.environ.get("QUIZMESH_TEST_NATS_URL", infra.DEFAULT_NATS_URL)
    mysql = os.environ.get("QUIZMESH_TEST_MYSQL_URL", DEFAULT_MYSQL)
    async with contextlib.AsyncExitStack() as stack:
        redis_url = await _configured_or_private(stack, "Redis", redis, infra.redis_at(redis))
        nats_url = await _configured_or_private(stack, "NATS", nats_, infra.nats_at(nats_))
        mysql_url = await _configured_or_private(stack, "MySQL", mysql, mariadb.mysql_at(mysql))
        database_url = await stack.enter_async_context(private_database(mysql_url))
        yield Backends(
            redis_url=redis_url,
            nats_url=nats_url,
            mysql_server_url=mysql_url,
            database_url=database_url,
            jwks_file=keys / "jwks.json",
            signing_key_file=keys / "signing-key.pem",
        )


@pytest.fixture(scope="module")
async def own_backends(backends: Backends) -> AsyncIterator[Backends]:
    """The shared servers with a database of the module's own: a quiz service the
    module starts sweeps and restores that module's quizzes only, not every other
    test's (and announces nothing of theirs under its own NATS prefix)."""
    async with private_database(backends.mysql_server_url) as url:
        yield dataclasses.replace(backends, database_url=url)


@pytest.fixture(scope="session")
async def stack(backends: Backends) -> AsyncIterator[Stack]:
    async with running_stack(backends) as running:
        yield running


@pytest.fixture(scope="session")
async def gateway(
    stack: Stack, backends: Backends, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[EnvoyProcess]:
    """A real Envoy in front of the stack, rendered from the same template as `make run`,
    serving the web client (web/) at / as `make run` does."""
    folder = tmp_path_factory.mktemp("envoy")
    settings = local_gateway(
        {name: f"127.0.0.1:{stack.port(name)}" for name in stack.apps},
        backends.jwks_file,
        web_root=REPO / "web",
    )
    config = write_envoy_config(folder / "envoy.yaml", settings)
    async with EnvoyProcess(config, log_file=folder / "envoy.log") as envoy:
        yield envoy


@pytest.fixture
async def http(gateway: EnvoyProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        yield client


@pytest.fixture(params=["grpc", "http"])
async def either_api(
    request: pytest.FixtureRequest, stack: Stack, gateway: EnvoyProcess
) -> AsyncIterator[Api]:
    """The suite's stack over each public surface in turn: native gRPC to the
    services, and HTTP/JSON through Envoy."""
    if request.param == "grpc":
        yield GrpcApi(stack.channels)
        return
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        yield HttpApi(client)


@pytest.fixture(scope="module")
async def module_stack(backends: Backends) -> AsyncIterator[Stack]:
    """A stack of the test module's own with no service running: its own key and NATS
    prefixes on the suite's backends, and `common()` settings for the one service the
    module starts itself. Whatever is left under the prefixes is removed after."""
    tag = uuid.uuid4().hex[:10]
    own = Stack(backends, key_prefix=f"t{tag}:", nats_prefix=f"t{tag}")
    try:
        yield own
    finally:
        await forget(backends, own.key_prefix, own.nats_prefix)


@pytest.fixture(scope="module")
async def redis_client(backends: Backends) -> AsyncIterator[Redis]:
    """The suite's Redis, replies decoded to str."""
    redis = Redis.from_url(backends.redis_url, decode_responses=True)
    try:
        yield redis
    finally:
        await redis.aclose()


@pytest.fixture(scope="module")
async def nats_client(backends: Backends) -> AsyncIterator[NatsClient]:
    """The suite's NATS, for publishing as the other services would and listening in."""
    nc = await nats.connect(backends.nats_url)
    try:
        yield nc
    finally:
        await nc.drain()


# Private servers, for the tests that kill them (never the shared ones).
@pytest.fixture
async def private_redis() -> AsyncIterator[infra.ValkeyServer]:
    """A valkey-server without persistence: killed and started again, it is empty."""
    server = await infra.start_valkey()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def private_nats() -> AsyncIterator[infra.NatsServer]:
    """A nats-server with JetStream whose store survives a restart."""
    server = await infra.start_nats()
    try:
        yield server
    finally:
        await server.close()
