"""One pipelined Redis connection for the hot scripts (answers, leaderboard reads).

Why (benchmarks/notes-intake.md): a redis-py pooled call cost ~190 µs of CPU per
EVALSHA on the benchmark machine (pool locks, a shielded release task, timeouts,
observability hooks), as much as all of the score service's own work; the same
command pipelined on one connection cost ~15 µs. Every concurrent call shares the
connection: commands are written in order, replies parsed by hiredis are handed
back in the same order, as Redis guarantees. While written commands await their
replies, new ones are held (at most `max_hold`) and go out together in one write
(group commit); a lone call is written on the next loop turn.

Against a Redis Cluster (a redis+cluster:// URL) the same class keeps one such
connection per node and sends each command to the node owning its key's slot
(services/live/cluster.py); the single-server path does not change.

Errors keep redis-py's types, so callers and the error mapping see the same
exceptions: ConnectionError/TimeoutError (the connection is dropped, every call in
flight fails, the next call reconnects) and ResponseError/NoScriptError.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qs, unquote, urlparse

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.mesh.config import RedisNodes
from services.mesh.pacing import Pacing

if TYPE_CHECKING:
    from services.live.cluster import ClusterPipes

Arg = str | int


def pack(args: Sequence[Arg]) -> bytes:
    """A command in RESP: an array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        raw = arg.encode() if isinstance(arg, str) else b"%d" % arg
        out.append(b"$%d\r\n%b\r\n" % (len(raw), raw))
    return b"".join(out)


@dataclass(frozen=True)
class RedisAddress:
    """What a redis:// or rediss:// URL says, or a redis+cluster:// one (the forms
    QUIZMESH_REDIS_URL takes): for a cluster, host and port are its first seed's, and
    the rest holds for every node."""

    host: str
    port: int
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: ssl.SSLContext | None = None
    # A Redis Cluster's seed nodes (host, port); empty for one server.
    seeds: tuple[tuple[str, int], ...] = ()

    @classmethod
    def parse(cls, url: str) -> RedisAddress:
        nodes = RedisNodes.parse(url)
        parts = urlparse(nodes.url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(
                "QUIZMESH_REDIS_URL must be a redis:// or rediss:// URL (for a Redis "
                f"Cluster: redis+cluster:// or rediss+cluster://), got {url!r}"
            )
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        tls = None
        if parts.scheme == "rediss":
            tls = ssl.create_default_context(cafile=query.get("ssl_ca_certs"))
            if query.get("ssl_cert_reqs", "required").lower() in ("none", "optional"):
                tls.check_hostname = False
                tls.verify_mode = ssl.CERT_NONE
        path = parts.path.lstrip("/")
        return cls(
            host=parts.hostname or "localhost",
            port=parts.port or 6379,
            db=int(path or query.get("db", "0")),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
            seeds=nodes.seeds,
        )


class _Connection(asyncio.Protocol):
    def __init__(
        self,
        max_hold: float,
        observe_batch: Callable[[float], None] | None = None,
        min_gap: float = 0.0,
    ) -> None:
        self.max_hold = max_hold
        self.pacing = Pacing(min_gap)
        self.observe_batch = observe_batch
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader(encoding="utf-8")
        # Calls in the order their commands were queued, with when that was; the
        # first len(waiting) - len(outgoing) of them are on the wire.
        self.waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self.outgoing: list[bytes] = []
        self.flush: asyncio.Handle | None = None
        self.lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        try:
            while (reply := self.reader.gets()) is not False:
                future, _ = self.waiting.popleft()
                if not future.done():
                    future.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as e:  # garbage, or a reply nobody asked for
            self.abort(RedisConnectionError(f"unexpected data from Redis: {e!r}"))
            return
        if self.flush is not None and len(self.waiting) == len(self.outgoing):
            # Everything on the wire is answered: the held commands go now (or once
            # min_gap has passed since the last write).
            self.flush.cancel()
            self.flush = self.pacing.schedule(asyncio.get_running_loop(), self._flush)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.flush is not None:
            self.flush.cancel()
            self.flush = None
        self.lost = RedisConnectionError(f"connection to Redis lost: {exc or 'closed'}")
        self._fail_all(self.lost)

    def _fail_all(self, error: Exception) -> None:
        while self.waiting:
            future, _ = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)

    def send(self, command: bytes) -> asyncio.Future[Any]:
        """Queues a command; it is written on the next loop turn (but not sooner than
        `min_gap` after the last write), or, while earlier commands are still
        unanswered, with the next write: when their replies are in or after
        `max_hold` seconds (grpc.aio starts one call per loop turn, so without
        holding every call would pay a write and a wakeup of its own)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self.lost is not None:
            future.set_exception(self.lost)
            return future
        self.waiting.append((future, time.monotonic()))
        self.outgoing.append(command)
        if self.flush is None:
            if len(self.waiting) == len(self.outgoing) or self.max_hold <= 0:
                self.flush = self.pacing.schedule(loop, self._flush)
            else:
                self.flush = loop.call_later(self.max_hold, self._flush)
        return future

    def _flush(self) -> None:
        self.flush = None
        if self.lost is None and self.transport is not None and self.outgoing:
            self.pacing.wrote()
            self.transport.write(b"".join(self.outgoing))
            if self.observe_batch is not None:
                self.observe_batch(len(self.outgoing))
        self.outgoing.clear()

    def oldest(self) -> float | None:
        return self.waiting[0][1] if self.waiting else None

    def abort(self, error: Exception) -> None:
        if self.flush is not None:
            self.flush.cancel()
            self.flush = None
        if self.lost is None:
            self.lost = error
            self._fail_all(error)
        if self.transport is not None:
            self.transport.abort()


class PipelinedRedis:
    """Commands to Redis over one connection shared by all callers, opened lazily
    and again after a failure. A reply that takes longer than `timeout` fails
    every call in flight (they are retried by the clients, SubmitAnswer being
    idempotent) and drops the connection."""

    def __init__(
        self,
        address: RedisAddress,
        timeout: float = 5.0,
        max_hold: float = 0.002,
        observe_batch: Callable[[float], None] | None = None,
        min_gap: float = 0.0,
    ) -> None:
        self.address = address
        self.timeout = timeout
        self.max_hold = max_hold
        self.min_gap = min_gap
        # Told how many commands each write carried (a metric of how well calls batch).
        self.observe_batch = observe_batch
        self._connection: _Connection | None = None
        self._connecting = asyncio.Lock()
        self._watchdog: asyncio.TimerHandle | None = None
        self._closed = False
        self._cluster: ClusterPipes | None = None
        if address.seeds:
            from services.live.cluster import ClusterPipes

            self._cluster = ClusterPipes(self)

    async def call(self, *args: Arg, route: Arg | None = None) -> Any:
        """The command's reply. On a cluster it goes to the node owning the slot of
        its key (an EVAL's first key, else its first argument), or of `route` when
        it has none (SCRIPT LOAD)."""
        if self._cluster is not None:
            return await self._cluster.call(args, route)
        connection = self._connection
        if connection is None or connection.lost is not None:
            connection = await self._connect()
        reply = await connection.send(pack(args))
        if isinstance(reply, hiredis.ReplyError):
            return _checked(reply)  # raises
        return reply

    async def call_asking(self, *args: Arg) -> Any:
        """ASKING and then the command, back to back on this node's connection (what
        a cluster's ASK redirection asks for)."""
        connection = self._connection
        if connection is None or connection.lost is not None:
            connection = await self._connect()
        asking = connection.send(pack(("ASKING",)))
        reply = await connection.send(pack(args))
        _checked(await asking)
        return _checked(reply)

    async def _connect(self) -> _Connection:
        async with self._connecting:
            if self._closed:
                raise RedisConnectionError("the Redis pipeline is closed")
            if self._connection is not None and self._connection.lost is None:
                return self._connection
            a = self.address
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(self.timeout):
                    _, connection = await loop.create_connection(
                        lambda: _Connection(self.max_hold, self.observe_batch, self.min_gap),
                        a.host,
                        a.port,
                        ssl=a.tls,
                        server_hostname=a.host if a.tls else None,
                    )
            except (OSError, TimeoutError) as e:
                raise RedisConnectionError(
                    f"cannot connect to Redis at {a.host}:{a.port}: {e!r}"
                ) from e
            handshake: list[Sequence[Arg]] = []
            if a.password is not None:
                handshake.append(
                    ("AUTH", a.username, a.password) if a.username else ("AUTH", a.password)
                )
            if a.db:
                handshake.append(("SELECT", a.db))
            try:
                for command in handshake:
                    async with asyncio.timeout(self.timeout):
                        reply = await connection.send(pack(command))
                    if isinstance(reply, hiredis.ReplyError):
                        raise RedisConnectionError(f"Redis refused {command[0]}: {reply}")
            except BaseException:
                connection.abort(RedisConnectionError("Redis handshake failed"))
                raise
            self._connection = connection
            self._arm_watchdog()
            return connection

    def _arm_watchdog(self) -> None:
        if self._watchdog is None and not self._closed:
            loop = asyncio.get_running_loop()
            self._watchdog = loop.call_later(self.timeout / 4, self._check)

    def _check(self) -> None:
        """Fails a connection whose oldest call has waited longer than `timeout`."""
        self._watchdog = None
        connection = self._connection
        if connection is None or connection.lost is not None:
            return
        oldest = connection.oldest()
        if oldest is not None and time.monotonic() - oldest > self.timeout:
            connection.abort(RedisTimeoutError(f"Redis did not answer within {self.timeout:g} s"))
            return
        self._arm_watchdog()

    async def close(self) -> None:
        self._closed = True
        if self._cluster is not None:
            await self._cluster.close()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._connection is not None:
            self._connection.abort(RedisConnectionError("the Redis pipeline is closed"))
            self._connection = None


def _checked(reply: Any) -> Any:
    """The reply, or the error it is as redis-py's exception."""
    if isinstance(reply, hiredis.ReplyError):
        message = str(reply)
        if message.startswith("NOSCRIPT"):
            raise NoScriptError(message)
        raise ResponseError(message)
    return reply


class Script:
    """A Lua script run by EVALSHA over a PipelinedRedis, and loaded again when
    Redis answers NOSCRIPT (restarted or flushed since it was last loaded)."""

    def __init__(self, pipe: PipelinedRedis, source: str) -> None:
        self.pipe = pipe
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        command = ("EVALSHA", self.sha, len(keys), *keys, *args)
        try:
            return await self.pipe.call(*command)
        except NoScriptError:
            # On a cluster, on the node that runs it: the one of its first key.
            await self.pipe.call("SCRIPT", "LOAD", self.source, route=keys[0] if keys else None)
            return await self.pipe.call(*command)
