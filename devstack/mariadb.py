"""A private MariaDB for the tests on a machine where none answers: Debian's
`mariadb-server` binaries (installed by `make mariadb`), a fresh data directory
under /tmp, a free port on 127.0.0.1, user root without a password, removed on close.

The MySQL-specific tests (dialect, locking, upserts, a database cut off behind a
proxy) need a real server: SQLite would pass them for the wrong reasons."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from devstack.infra import (
    PrivateServer,
    ProcessFailed,
    configured_or_started,
    database_answers,
    free_port,
    stopped_after,
)

log = logging.getLogger(__name__)

INSTALL_HINT = "no MariaDB server binaries (mariadbd): run `make mariadb` (Debian's mariadb-server)"
# The data directory is small and short-lived: a small buffer pool keeps the server
# to ~150 MB of memory beside the suite.
BUFFER_POOL = "128M"


def _binary(names: tuple[str, ...], folders: tuple[str, ...]) -> Path:
    for name in names:
        if found := shutil.which(name):
            return Path(found)
        for folder in folders:
            if (candidate := Path(folder) / name).is_file():
                return candidate
    raise FileNotFoundError(INSTALL_HINT)


def mariadbd_binary() -> Path:
    return _binary(("mariadbd", "mysqld"), ("/usr/sbin", "/usr/libexec"))


def install_db_binary() -> Path:
    return _binary(("mariadb-install-db", "mysql_install_db"), ("/usr/bin", "/usr/sbin"))


def _as_user() -> list[str]:
    # mariadbd refuses to run as root unless told to; as anyone else it runs as itself.
    return ["--user=root"] if os.geteuid() == 0 else []


class MariaDBServer(PrivateServer):
    """mariadbd on 127.0.0.1:`port`; `url` is a server URL (database `mysql`) to
    create and drop databases with."""

    @property
    def url(self) -> str:
        return f"mysql+aiomysql://root@127.0.0.1:{self.port}/mysql"

    async def ready(self) -> bool:
        # The server speaks first: a handshake packet whose fifth byte is protocol 10.
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", self.port), timeout=1.0
        )
        try:
            header = await asyncio.wait_for(reader.readexactly(5), timeout=1.0)
            return header[4] == 10
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def start_mariadb(port: int | None = None) -> MariaDBServer:
    """A started private MariaDB on `port` (default: a free one) with a fresh data
    directory; FileNotFoundError (saying how to install it) without the binaries."""
    daemon, install = mariadbd_binary(), install_db_binary()
    port = port or free_port()
    directory = Path(tempfile.mkdtemp(prefix="quizmesh-mariadb-"))
    data = directory / "data"
    installed = await asyncio.create_subprocess_exec(
        str(install),
        *("--no-defaults", f"--datadir={data}", "--auth-root-authentication-method=normal"),
        *("--skip-test-db", *_as_user()),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await installed.communicate()
    if installed.returncode != 0:
        shutil.rmtree(directory, ignore_errors=True)
        raise ProcessFailed(f"mariadb-install-db failed:\n{output.decode(errors='replace')}")
    argv = [
        str(daemon),
        *("--no-defaults", f"--datadir={data}", *_as_user()),
        *("--bind-address=127.0.0.1", f"--port={port}", f"--socket={directory / 'mysqld.sock'}"),
        *(f"--pid-file={directory / 'mysqld.pid'}", "--skip-log-bin", "--skip-name-resolve"),
        *(f"--innodb-buffer-pool-size={BUFFER_POOL}", "--character-set-server=utf8mb4"),
    ]
    server = MariaDBServer("mariadb", argv, port, directory)
    await server.start()
    return server


async def mysql_answers(url: str, within: float = 5.0) -> bool:
    """True when a MySQL/MariaDB server answers at the server of `url`."""
    try:
        await database_answers(url, within)
    except Exception:
        return False
    return True


async def ensure_mysql(url: str) -> tuple[str, MariaDBServer | None]:
    return await configured_or_started(url, mysql_answers, start_mariadb, "MySQL/MariaDB")


@contextlib.asynccontextmanager
async def mysql_at(url: str) -> AsyncIterator[str]:
    """A MySQL server URL to use while inside: `url` when a server answers there,
    else a private MariaDB's (never SQLite)."""
    async with stopped_after(await ensure_mysql(url)) as chosen:
        yield chosen
