"""Fixtures layered as backends -> stack -> stubs/gateway.

The suite uses the Redis, NATS and MySQL/MariaDB at QUIZMESH_TEST_REDIS_URL,
QUIZMESH_TEST_NATS_URL and QUIZMESH_TEST_MYSQL_URL (defaults: the usual local
ports) when they answer, and otherwise starts private Redis-compatible and NATS
servers (MySQL falls back to the embedded SQLite database). Every test session
keeps to its own database, key prefix and stream names and removes them after.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from services.core.auth import ensure_dev_keys
from services.database.engine import create_engine
from services.database.migrate import upgrade
from tests.stack import Backends, Stack, running_stack

DEFAULT_MYSQL = "mysql+aiomysql://root@127.0.0.1:3306/test"


@contextlib.asynccontextmanager
async def private_database(server_url: str, fallback_dir: Path) -> AsyncIterator[str]:
    """A fresh, migrated database of our own on the MySQL server, else SQLite."""
    name = f"quizmesh_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server_url)
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    except Exception as e:
        await admin.dispose()
        print(f"\nMySQL at {server_url} not reachable ({e.__class__.__name__}); using SQLite")
        url = f"sqlite+aiosqlite:///{fallback_dir / 'quizmesh.db'}"
        await upgrade(url)
        yield url
        return
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    try:
        await upgrade(url)
        yield url
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        await admin.dispose()


@contextlib.asynccontextmanager
async def redis_at(url: str) -> AsyncIterator[str]:
    yield url


@contextlib.asynccontextmanager
async def nats_at(url: str) -> AsyncIterator[str]:
    yield url


@pytest.fixture(scope="session")
async def backends(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Backends]:
    keys = tmp_path_factory.mktemp("keys")
    ensure_dev_keys(keys / "signing-key.pem", keys / "jwks.json")
    async with contextlib.AsyncExitStack() as stack:
        redis_url = await stack.enter_async_context(
            redis_at(os.environ.get("QUIZMESH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
        )
        nats_url = await stack.enter_async_context(
            nats_at(os.environ.get("QUIZMESH_TEST_NATS_URL", "nats://127.0.0.1:4222"))
        )
        database_url = await stack.enter_async_context(
            private_database(
                os.environ.get("QUIZMESH_TEST_MYSQL_URL", DEFAULT_MYSQL),
                tmp_path_factory.mktemp("sqlite"),
            )
        )
        yield Backends(
            redis_url=redis_url,
            nats_url=nats_url,
            database_url=database_url,
            jwks_file=keys / "jwks.json",
            signing_key_file=keys / "signing-key.pem",
        )


@pytest.fixture(scope="session")
async def stack(backends: Backends) -> AsyncIterator[Stack]:
    async with running_stack(backends) as running:
        yield running
