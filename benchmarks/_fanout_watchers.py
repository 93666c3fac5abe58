"""Watcher processes for the fan-out benchmark: many native gRPC streams per process
over a few connections, each noting (with this machine's wall clock) when it first
saw each leaderboard version.

A process reports to the driver through a multiprocessing queue:
("ready", index, streams, cpu)        every stream has its opening message
("seen", index, version, first, last, cpu) every stream of this process saw `version`
("error", index, text)                a stream failed
("done", index, cpu, messages)        after the driver asked it to stop
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.synchronize
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from typing import Any

import grpc
from quizmesh.stream.v1 import stream_pb2

from benchmarks import _fanout_h2 as h2
from services.mesh.retries import channel_options

SERVICE = "/quizmesh.stream.v1.StreamService/"
Report = tuple[Any, ...]


@dataclass(frozen=True)
class WatcherSpec:
    index: int
    # Streams go round-robin over these addresses (one per stream process, or one).
    targets: tuple[str, ...]
    quiz_id: str
    rpc: str  # WatchLeaderboard or WatchQuiz
    # One token per stream ("" watches as a spectator).
    tokens: tuple[str, ...]
    connections: int
    # "h2": the frame-level client (cheap per message); "grpc": grpc.aio.
    client: str = "h2"
    # Streams opened before waiting for their opening messages.
    ramp: int = 500


# Spawned, not forked: the driver already runs grpc threads.
SPAWN = multiprocessing.get_context("spawn")


class ClientProcesses:
    """The driver's side: watcher client processes, each running `target(spec,
    queue, stop)` (this module's `main`, or _fanout_sse's), reporting on `queue`
    until `stop` is set."""

    def __init__(self) -> None:
        self.queue: Queue[Report | None] = SPAWN.Queue()
        self.stop = SPAWN.Event()
        self.processes: list[BaseProcess] = []

    def start(self, target: Callable[..., None], specs: Iterable[object]) -> None:
        for spec in specs:
            process = SPAWN.Process(target=target, args=(spec, self.queue, self.stop), daemon=True)
            process.start()
            self.processes.append(process)

    def reap(self) -> None:
        """Waits for the processes to exit, killing any still there after 10 s."""
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()


def version_of(rpc: str, raw: bytes) -> int:
    """The leaderboard version a message carries; -1 for heartbeats and other events."""
    if rpc == "WatchLeaderboard":
        board = stream_pb2.WatchLeaderboardResponse.FromString(raw)
        return int(board.snapshot.version) if board.HasField("snapshot") else -1
    event = stream_pb2.WatchQuizResponse.FromString(raw).event
    if event.HasField("leaderboard_changed"):
        return int(event.leaderboard_changed.version)
    return -1


class Tally:
    """Counts, per version, the streams of this process that have seen it."""

    def __init__(self, spec: WatcherSpec, reports: Queue[Report]) -> None:
        self.spec = spec
        self.streams = len(spec.tokens)
        self.reports = reports
        self.opened = 0
        self.all_open = asyncio.Event()
        self.batch_open = asyncio.Event()
        self.batch_target = 0
        self.counts: dict[int, int] = {}
        self.first: dict[int, float] = {}
        self.messages = 0

    def opening(self) -> None:
        self.opened += 1
        if self.opened >= self.batch_target:
            self.batch_open.set()
        if self.opened == self.streams:
            self.all_open.set()

    async def open_all(self, open_streams: Callable[[int, int], None], stop: Any) -> None:
        """Opens the streams `spec.ramp` at a time (`open_streams(start, end)`), each
        step once the previous one's streams have their opening message; reports
        "ready" once all have, then holds them open until the driver says stop."""
        for start in range(0, self.streams, self.spec.ramp):
            end = min(start + self.spec.ramp, self.streams)
            self.batch_target = end
            self.batch_open.clear()
            open_streams(start, end)
            async with asyncio.timeout(60):
                await self.batch_open.wait()
        await self.all_open.wait()
        self.reports.put(("ready", self.spec.index, self.streams, time.process_time()))
        await asyncio.to_thread(stop.wait)

    def seen(self, before: int, version: int, now: float) -> None:
        # A slow stream may skip versions (watchers get the newest board): a newer
        # version counts as having seen the ones in between.
        for v in range(max(before + 1, version - 1000), version + 1):
            count = self.counts.get(v, 0) + 1
            self.counts[v] = count
            if count == 1:
                self.first[v] = now
            if count == self.streams:
                self.reports.put(
                    ("seen", self.spec.index, v, self.first.pop(v), now, time.process_time())
                )
                del self.counts[v]


async def watch_one(
    method: grpc.aio.UnaryStreamMultiCallable[bytes, bytes],
    request: bytes,
    token: str,
    tally: Tally,
) -> None:
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    call = method(request, metadata=metadata)
    rpc = tally.spec.rpc
    last = -1
    async for raw in call:
        now = time.time()
        tally.messages += 1
        version = version_of(rpc, raw)
        if version <= last:
            continue
        if last < 0:
            tally.opening()
        else:
            tally.seen(last, version, now)
        last = version


def request_of(spec: WatcherSpec) -> bytes:
    if spec.rpc == "WatchLeaderboard":
        return stream_pb2.WatchLeaderboardRequest(quiz_id=spec.quiz_id).SerializeToString()
    return stream_pb2.WatchQuizRequest(quiz_id=spec.quiz_id).SerializeToString()


async def run_h2(spec: WatcherSpec, reports: Queue[Report], stop: Any) -> None:
    tally = Tally(spec, reports)
    rpc = spec.rpc
    last = [-1] * tally.streams
    versions: dict[bytes, int] = {}
    stopping = False

    def on_message(index: int, message: bytes) -> None:
        now = time.time()
        tally.messages += 1
        # Every watcher gets the same bytes: parse each distinct message once.
        version = versions.get(message)
        if version is None:
            version = version_of(rpc, message)
            if len(versions) > 10_000:
                versions.clear()
            versions[message] = version
        before = last[index]
        if version <= before:
            return
        last[index] = version
        if before < 0:
            tally.opening()
        else:
            tally.seen(before, version, now)

    def on_end(index: int, why: str) -> None:
        if not stopping:
            reports.put(("error", spec.index, f"stream {index}: {why}"))

    connections = []
    for i in range(spec.connections):
        host, port = spec.targets[i % len(spec.targets)].rsplit(":", 1)
        connections.append(await h2.connect(host, int(port), on_message, on_end))
    path = SERVICE + rpc
    request = request_of(spec)
    headers: dict[str, bytes] = {}

    def open_streams(start: int, end: int) -> None:
        batches: list[list[tuple[int, bytes, bytes]]] = [[] for _ in connections]
        for i in range(start, end):
            token = spec.tokens[i]
            if token not in headers:
                authority = spec.targets[(i % len(connections)) % len(spec.targets)]
                headers[token] = h2.request_headers(authority, path, token)
            batches[i % len(connections)].append((i, headers[token], request))
        for connection, batch in zip(connections, batches, strict=True):
            if batch:
                connection.open(batch)

    try:
        await tally.open_all(open_streams, stop)
    finally:
        stopping = True
        for connection in connections:
            connection.close()
        reports.put(("done", spec.index, time.process_time(), tally.messages))


async def run(spec: WatcherSpec, reports: Queue[Report], stop: Any) -> None:
    if spec.client == "h2":
        await run_h2(spec, reports, stop)
        return
    options = [
        # Separate connections (channels with equal arguments would share one).
        ("grpc.use_local_subchannel_pool", 1),
        ("grpc.max_receive_message_length", 16 * 1024 * 1024),
        # A watch refused UNAVAILABLE before its first event is sent again.
        *channel_options(),
    ]
    channels = [
        grpc.aio.insecure_channel(spec.targets[i % len(spec.targets)], options=options)
        for i in range(spec.connections)
    ]
    methods: list[grpc.aio.UnaryStreamMultiCallable[bytes, bytes]] = [
        channel.unary_stream(SERVICE + spec.rpc, response_deserializer=None) for channel in channels
    ]
    request = request_of(spec)
    tally = Tally(spec, reports)
    tasks: list[asyncio.Task[None]] = []

    def failed(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            reports.put(("error", spec.index, repr(task.exception())))

    def open_streams(start: int, end: int) -> None:
        for i in range(start, end):
            task = asyncio.create_task(
                watch_one(methods[i % len(methods)], request, spec.tokens[i], tally)
            )
            task.add_done_callback(failed)
            tasks.append(task)

    try:
        await tally.open_all(open_streams, stop)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        for channel in channels:
            await channel.close()
        reports.put(("done", spec.index, time.process_time(), tally.messages))


def main(
    spec: WatcherSpec, reports: Queue[Report], stop: multiprocessing.synchronize.Event
) -> None:
    """The process's entry point (multiprocessing, spawn)."""
    try:
        import uvloop

        uvloop.run(run(spec, reports, stop))
    except ImportError:  # pragma: no cover
        asyncio.run(run(spec, reports, stop))
    except BaseException as e:
        reports.put(("error", spec.index, repr(e)))
        raise
