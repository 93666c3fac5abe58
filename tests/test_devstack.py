"""devstack.infra: private servers that start, answer, die and come back on the same
port; "use the configured server, else start one"; no orphaned processes."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from pathlib import Path

import nats
import pytest
from redis.asyncio import Redis
from sqlalchemy import text

from devstack import infra, mariadb
from devstack.gateway import REPO
from services.database.engine import create_engine
from tests.stack import Backends


def unused_url(scheme: str) -> str:
    return f"{scheme}://127.0.0.1:{infra.free_port()}"


async def redis_get(url: str, key: str) -> str | None:
    client = Redis.from_url(url, decode_responses=True)
    try:
        value = await client.get(key)
        return None if value is None else str(value)
    finally:
        await client.aclose()


async def group_gone(pgid: int, within: float = 2.0) -> bool:
    """True once no process of the group is left (killed children are reaped by
    init a moment later, and zombies still count for killpg)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.02)


# --- private servers ---------------------------------------------------------------------


async def test_private_valkey_answers_and_restarts_empty_on_the_same_port_after_a_kill() -> None:
    async with await infra.start_valkey() as valkey:
        client = Redis.from_url(valkey.url, decode_responses=True)
        await client.set("answer", "42")
        assert await client.get("answer") == "42"
        await client.aclose()

        await valkey.kill()
        assert not await infra.redis_answers(valkey.url)
        port = valkey.port
        await valkey.restart()

        assert valkey.port == port
        assert valkey.url == f"redis://127.0.0.1:{port}/0"
        # No persistence: like a Redis that crashed, it comes back empty.
        assert await redis_get(valkey.url, "answer") is None


async def test_private_nats_keeps_jetstream_data_across_a_kill_and_restart() -> None:
    async with await infra.start_nats() as server:
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await js.add_stream(name="ANSWERS", subjects=["answers.>"])
        await js.publish("answers.q1", b"first")
        await nc.close()

        await server.kill()
        assert not await infra.nats_answers(server.url)
        await server.restart()

        nc = await nats.connect(server.url)
        info = await nc.jetstream().stream_info("ANSWERS")
        await nc.close()
        assert info.state.messages == 1


async def test_close_removes_the_data_directory() -> None:
    server = await infra.start_nats()
    directory = server.directory
    assert directory.exists()

    await server.close()

    assert not server.running
    assert not directory.exists()


# --- configured server, else a local one ---------------------------------------------------


async def test_ensure_redis_uses_the_configured_server_when_it_answers() -> None:
    async with await infra.start_valkey() as configured:
        url, started = await infra.ensure_redis(configured.url)

    assert (url, started) == (configured.url, None)


async def test_ensure_redis_starts_a_local_server_when_nothing_answers() -> None:
    unreachable = unused_url("redis") + "/0"

    url, started = await infra.ensure_redis(unreachable)

    assert started is not None
    try:
        assert url != unreachable
        assert await infra.redis_answers(url)
    finally:
        await started.close()
    assert not await infra.redis_answers(url)


async def test_ensure_nats_uses_the_configured_server_when_it_answers() -> None:
    async with await infra.start_nats() as configured:
        url, started = await infra.ensure_nats(configured.url)

    assert (url, started) == (configured.url, None)


async def test_ensure_nats_does_not_count_a_server_without_jetstream(tmp_path: Path) -> None:
    port = infra.free_port()
    plain = infra.NatsServer(
        "nats-plain", [str(infra.nats_binary()), "-a", "127.0.0.1", "-p", str(port)], port, tmp_path
    )
    async with plain:
        url, started = await infra.ensure_nats(plain.url)
        assert started is not None
        try:
            assert url != plain.url
            assert await infra.nats_answers(url)
        finally:
            await started.close()


async def test_redis_at_stops_the_server_it_started_on_exit() -> None:
    async with infra.redis_at(unused_url("redis") + "/0") as url:
        assert await infra.redis_answers(url)

    assert not await infra.redis_answers(url)


async def test_nats_at_falls_back_to_a_local_server() -> None:
    unreachable = unused_url("nats")

    async with infra.nats_at(unreachable) as url:
        assert url != unreachable
        assert await infra.nats_answers(url)

    assert not await infra.nats_answers(url)


async def test_mysql_at_falls_back_to_a_private_mariadb_removed_after() -> None:
    unreachable = f"mysql+aiomysql://root@127.0.0.1:{infra.free_port()}/test"

    async with mariadb.mysql_at(unreachable) as url:
        assert url != unreachable
        engine = create_engine(url)
        async with engine.connect() as conn:
            version = (await conn.execute(text("SELECT VERSION()"))).scalar()
        await engine.dispose()
        assert "MariaDB" in str(version)

    assert not await mariadb.mysql_answers(url, within=1.0)


async def test_choose_database_without_configuration_is_sqlite() -> None:
    assert await infra.choose_database(None) == infra.DEFAULT_SQLITE_URL
    # In the checkout's .quizmesh/, wherever the command was started.
    assert f"sqlite+aiosqlite:///{REPO}/.quizmesh/quizmesh.db" == infra.DEFAULT_SQLITE_URL


async def test_choose_database_falls_back_to_sqlite_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    unreachable = f"mysql+aiomysql://root@127.0.0.1:{infra.free_port()}/quizmesh"

    with caplog.at_level(logging.WARNING, logger="devstack.infra"):
        chosen = await infra.choose_database(unreachable)

    assert chosen == infra.DEFAULT_SQLITE_URL
    assert "not reachable" in caplog.text
    assert infra.DEFAULT_SQLITE_URL in caplog.text


async def test_choose_database_creates_a_missing_mysql_database(backends: Backends) -> None:
    name = f"quizmesh_devstack_{uuid.uuid4().hex[:8]}"
    server = backends.mysql_server_url
    url = server.rsplit("/", 1)[0] + f"/{name}"
    try:
        assert await infra.choose_database(url) == url
        engine = create_engine(url)
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT DATABASE()"))).scalar() == name
        await engine.dispose()
    finally:
        admin = create_engine(server)
        async with admin.connect() as conn:
            await conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        await admin.dispose()


# --- managed processes ---------------------------------------------------------------------


async def test_stop_ends_the_whole_process_group(tmp_path: Path) -> None:
    # A process that started children of its own: none may outlive it.
    process = infra.ManagedProcess(
        "family", ["sh", "-c", "sleep 300 & sleep 300 & wait"], log_file=tmp_path / "family.log"
    )
    await process.start()
    pgid = process.pid
    assert pgid is not None
    assert not await group_gone(pgid, within=0)

    await process.stop(grace=2)

    assert not process.running
    assert await group_gone(pgid)


async def test_kill_ends_the_whole_process_group(tmp_path: Path) -> None:
    process = infra.ManagedProcess(
        "family", ["sh", "-c", "sleep 300 & wait"], log_file=tmp_path / "f.log"
    )
    await process.start()
    pgid = process.pid
    assert pgid is not None

    await process.kill()

    assert process.returncode == -9
    assert await group_gone(pgid)


class NeverReady(infra.ManagedProcess):
    async def ready(self) -> bool:
        return False


async def test_process_that_dies_while_starting_reports_its_output(tmp_path: Path) -> None:
    process = NeverReady(
        "broken", ["sh", "-c", "echo cannot bind; exit 3"], log_file=tmp_path / "broken.log"
    )

    with pytest.raises(infra.ProcessFailed, match=r"(?s)exited with code 3.*cannot bind"):
        await process.start()


def test_free_port_can_be_bound() -> None:
    port = infra.free_port()

    assert infra.port_is_free(port)


# --- free ports ----------------------------------------------------------------------------


def server_socket(*options: int, host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening TCP socket with the given SOL_SOCKET options set."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    for option in options:
        s.setsockopt(socket.SOL_SOCKET, option, 1)
    s.bind((host, port))
    s.listen()
    return s


def binds_plainly(port: int) -> bool:
    """Whether `port` can be bound without any option (TIME_WAIT entries block that)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_a_port_whose_connections_are_only_in_time_wait_is_free() -> None:
    # A server as ours bind (SO_REUSEADDR) that closed a connection first: its side
    # of it stays in TIME_WAIT on the port for a minute after the server is gone,
    # as after a stopped or killed quizmesh-dev.
    server = server_socket(socket.SO_REUSEADDR)
    port = int(server.getsockname()[1])
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()
    assert client.recv(1) == b""  # the server's FIN arrived
    client.close()
    server.close()
    assert not binds_plainly(port), "the test needs a TIME_WAIT entry on the port"

    assert infra.port_is_free(port)
    with server_socket(socket.SO_REUSEADDR, port=port):  # and a new server can bind it
        pass


@pytest.mark.parametrize(
    ("options", "host"),
    [
        pytest.param((), "127.0.0.1", id="plain"),
        pytest.param((socket.SO_REUSEADDR,), "127.0.0.1", id="SO_REUSEADDR"),
        pytest.param((socket.SO_REUSEPORT,), "127.0.0.1", id="SO_REUSEPORT"),
        pytest.param((socket.SO_REUSEADDR, socket.SO_REUSEPORT), "127.0.0.1", id="both"),
        pytest.param((socket.SO_REUSEADDR, socket.SO_REUSEPORT), "0.0.0.0", id="both-any"),
    ],
)
def test_a_port_someone_listens_on_is_not_free(options: tuple[int, ...], host: str) -> None:
    # The services bind with SO_REUSEPORT: a leftover one still listening must be
    # seen, or a new one would silently share its port.
    with server_socket(*options, host=host) as listener:
        port = int(listener.getsockname()[1])

        assert not infra.port_is_free(port)
