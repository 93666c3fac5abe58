"""A run's own part of shared servers (tests, benchmarks): a database of its own on
the MySQL server (else an SQLite file), and removal of its Redis keys and JetStream
streams, so that many runs share one Redis, NATS and MariaDB safely."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import nats
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from services.database.engine import create_engine
from services.database.migrate import upgrade
from services.mesh.connections import redis_client
from services.mesh.messaging import Subjects


@contextlib.asynccontextmanager
async def _admin(server_url: str) -> AsyncIterator[AsyncConnection]:
    """A connection to the MySQL server of its own, for CREATE/DROP DATABASE: a long
    run does not hold an idle one in between."""
    engine = create_engine(server_url)
    try:
        async with engine.connect() as conn:
            yield conn
    finally:
        await engine.dispose()


async def _drop_database(server_url: str, name: str) -> None:
    """DROP DATABASE waits for every open transaction on its tables: connections
    a killed process or a cancelled task left open would hold it for ever, so they
    are ended first."""
    async with _admin(server_url) as conn:
        others = await conn.execute(
            text(
                "SELECT id FROM information_schema.processlist "
                "WHERE db = :db AND id <> CONNECTION_ID()"
            ),
            {"db": name},
        )
        for (connection_id,) in others.all():
            with contextlib.suppress(Exception):  # it may have ended meanwhile
                await conn.execute(text(f"KILL {int(connection_id)}"))
        await conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))


@contextlib.asynccontextmanager
async def private_database(
    server_url: str | None, name: str, fallback_dir: Path | None, *, migrate: bool = True
) -> AsyncIterator[str]:
    """The URL of a fresh database `name` on the MySQL server at `server_url`
    (migrated unless told not to), dropped on leaving. With no server, or one that
    does not answer while `fallback_dir` is given, an SQLite file there instead."""
    if server_url is not None:
        try:
            async with _admin(server_url) as conn:
                await conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
        except Exception as e:
            if fallback_dir is None:
                raise
            print(f"\nMySQL at {server_url} not reachable ({e.__class__.__name__}); using SQLite")
            server_url = None
    if server_url is None:
        assert fallback_dir is not None, "SQLite needs a folder"
        url = f"sqlite+aiosqlite:///{fallback_dir / 'quizmesh.db'}"
    else:
        url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    try:
        if migrate:
            await upgrade(url)
        yield url
    finally:
        if server_url is not None:
            await _drop_database(server_url, name)


async def forget(redis_url: str, nats_url: str, key_prefix: str, nats_prefix: str) -> None:
    """Deletes the Redis keys under `key_prefix` and the JetStream streams of
    `nats_prefix`."""
    redis = redis_client(redis_url)
    try:
        # On a cluster: every primary's keys, each UNLINK split by slot.
        keys = [key async for key in redis.scan_iter(match=f"{key_prefix}*", count=1000)]
        # UNLINK: a board of a million members is freed off Redis's main thread.
        for start in range(0, len(keys), 1000):
            await redis.unlink(*keys[start : start + 1000])
    finally:
        await redis.aclose()
    subjects = Subjects(nats_prefix)
    async with await nats.connect(nats_url) as nc:
        js = nc.jetstream()
        for stream in (subjects.events_stream, subjects.answers_stream):
            with contextlib.suppress(Exception):
                await js.delete_stream(stream)
