"""Watcher processes for the end-to-end benchmark: players watching the leaderboard
through Envoy, as browsers do (one HTTP/1.1 connection each, Server-Sent Events)
and, optionally, native gRPC watchers (HTTP/2 to Envoy, many streams per connection).

Each watcher records when it first saw each leaderboard version (this machine's
wall clock). The process reports to the driver through a multiprocessing queue:
("ready", index, watchers)         every watcher has its opening snapshot
("error", index, text)             a watcher failed
("arrivals", index, [[(version, time), ...] per watcher], cpu_seconds, messages)
                                   after the driver asked it to stop
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing.synchronize
import re
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from multiprocessing.queues import Queue
from typing import Any, TypeVar, cast
from urllib.parse import quote

from benchmarks import _fanout_h2 as h2
from benchmarks._fanout_watchers import SERVICE, Report, version_of

# The snapshot's version in the transcoder's JSON (int64 fields are JSON strings).
VERSION = re.compile(rb'"version":\s*"(\d+)"')


@dataclass(frozen=True)
class E2eWatcherSpec:
    index: int
    host: str
    port: int
    quiz_id: str
    # One player token per SSE watcher, then per native watcher.
    sse_tokens: tuple[str, ...]
    native_tokens: tuple[str, ...]
    native_connections: int = 4
    # Connections opened before waiting for their opening snapshots.
    ramp: int = 250


class Arrivals:
    """Per watcher, the (version, time) of each board newer than the last one."""

    def __init__(self, watchers: int) -> None:
        self.seen: list[list[tuple[int, float]]] = [[] for _ in range(watchers)]
        self.last = [-1] * watchers
        self.opened = 0
        self.batch_target = 0
        self.batch_open = asyncio.Event()
        self.messages = 0

    def saw(self, watcher: int, version: int, now: float) -> None:
        self.messages += 1
        if version <= self.last[watcher]:
            return
        if self.last[watcher] < 0:
            self.opened += 1
            if self.opened >= self.batch_target:
                self.batch_open.set()
        self.last[watcher] = version
        self.seen[watcher].append((version, now))


class SseWatch(asyncio.Protocol):
    """One `GET .../leaderboard:watch` over HTTP/1.1: chunked text/event-stream."""

    def __init__(self, watcher: int, request: bytes, arrivals: Arrivals, on_end: Any) -> None:
        self.watcher = watcher
        self.request = request
        self.arrivals = arrivals
        self.on_end = on_end
        self.transport: asyncio.Transport | None = None
        self.raw = b""
        self.headers_done = False
        self.chunk_left = 0
        self.events = b""
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closing:
            self.on_end(self.watcher, f"connection lost: {exc!r}")

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.raw += data
        if not self.headers_done:
            end = self.raw.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.raw = self.raw[:end], self.raw[end + 4 :]
            status = head.split(b"\r\n", 1)[0]
            if b" 200 " not in status + b" " or b"chunked" not in head.lower():
                self.on_end(self.watcher, f"unexpected response: {head[:300]!r}")
                self.close()
                return
            self.headers_done = True
        self._chunks()

    def _chunks(self) -> None:
        raw = self.raw
        pos = 0
        while True:
            if self.chunk_left == 0:
                line_end = raw.find(b"\r\n", pos)
                if line_end < 0:
                    break
                size = int(raw[pos:line_end].split(b";", 1)[0] or b"0", 16)
                if size == 0:
                    if not self.closing:
                        self.on_end(self.watcher, "the stream ended")
                    self.close()
                    return
                self.chunk_left = size + 2  # the chunk and its CRLF
                pos = line_end + 2
            take = min(self.chunk_left, len(raw) - pos)
            if take <= 0:
                break
            self.events += raw[pos : pos + take]
            pos += take
            self.chunk_left -= take
            if self.chunk_left == 0:
                self.events = self.events[:-2]
        self.raw = raw[pos:]
        self._events()

    def _events(self) -> None:
        if b"\n\n" not in self.events:
            return
        *complete, self.events = self.events.split(b"\n\n")
        now = time.time()
        for event in complete:
            found = VERSION.search(event)
            if found is not None:
                self.arrivals.saw(self.watcher, int(found.group(1)), now)
            else:
                self.arrivals.messages += 1  # a heartbeat


async def run(spec: E2eWatcherSpec, reports: Queue[Report], stop: Any) -> None:
    sse = len(spec.sse_tokens)
    total = sse + len(spec.native_tokens)
    arrivals = Arrivals(total)
    stopping = False

    def on_end(watcher: int, why: str) -> None:
        if not stopping:
            reports.put(("error", spec.index, f"watcher {watcher}: {why}"))

    path = f"/v1/quizzes/{spec.quiz_id}/leaderboard:watch"
    watches: list[SseWatch] = []
    connections: list[h2.GrpcWatchConnection] = []
    try:
        for start in range(0, total, spec.ramp):
            end = min(start + spec.ramp, total)
            arrivals.batch_target = end
            arrivals.batch_open.clear()
            watches += [  # one after the other, as phones connect
                await open_sse(
                    (spec.host, spec.port),
                    path,
                    spec.sse_tokens[i],
                    lambda request, i=i: SseWatch(i, request, arrivals, on_end),  # type: ignore[misc]
                )
                for i in range(start, min(end, sse))
            ]
            natives = range(max(start, sse), end)
            if natives:
                await _open_native(spec, natives, arrivals, on_end, connections)
            async with asyncio.timeout(120):
                await arrivals.batch_open.wait()
        reports.put(("ready", spec.index, total))
        await asyncio.to_thread(stop.wait)
    finally:
        stopping = True
        for watch in watches:
            watch.close()
        for connection in connections:
            connection.close()
        reports.put(("arrivals", spec.index, arrivals.seen, time.process_time(), arrivals.messages))


W = TypeVar("W", bound=asyncio.Protocol)


async def open_sse(
    address: tuple[str, int], path: str, token: str, make: Callable[[bytes], W]
) -> W:
    """One SSE watch of `path` over a connection of its own, as a browser's
    EventSource opens it; `make` builds the protocol from the request's bytes."""
    request = (
        f"GET {path}?access_token={quote(token)} HTTP/1.1\r\n"
        f"Host: {address[0]}:{address[1]}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    _, watch = await loop.create_connection(lambda: make(request), *address)
    return watch


async def _open_native(
    spec: E2eWatcherSpec,
    watchers: range,
    arrivals: Arrivals,
    on_end: Any,
    connections: list[h2.GrpcWatchConnection],
) -> None:
    """gRPC WatchLeaderboard streams (watcher numbers after the SSE ones) to Envoy."""
    sse = len(spec.sse_tokens)

    def on_message(watcher: int, message: bytes) -> None:
        version = version_of("WatchLeaderboard", message)
        if version >= 0:
            arrivals.saw(watcher, version, time.time())

    while len(connections) < spec.native_connections:
        connections.append(await h2.connect(spec.host, spec.port, on_message, on_end))
    from quizmesh.stream.v1 import stream_pb2

    request = stream_pb2.WatchLeaderboardRequest(quiz_id=spec.quiz_id).SerializeToString()
    authority = f"{spec.host}:{spec.port}"
    batches: list[list[tuple[int, bytes, bytes]]] = [[] for _ in connections]
    for watcher in watchers:
        token = spec.native_tokens[watcher - sse]
        headers = h2.request_headers(authority, SERVICE + "WatchLeaderboard", token)
        batches[watcher % len(connections)].append((watcher, headers, request))
    for connection, batch in zip(connections, batches, strict=True):
        if batch:
            connection.open(batch)


def main(
    spec: E2eWatcherSpec, reports: Queue[Report], stop: multiprocessing.synchronize.Event
) -> None:
    """The process's entry point (multiprocessing, spawn)."""
    run_watcher_process(run(spec, reports, stop), reports, spec.index)


def run_watcher_process(
    work: Coroutine[Any, Any, None], reports: Queue[Report], index: int
) -> None:
    """A watcher process's work on uvloop; a failure is reported before it ends it."""
    try:
        import uvloop

        uvloop.run(work)
    except BaseException as e:
        with contextlib.suppress(Exception):
            reports.put(("error", index, repr(e)))
        raise
