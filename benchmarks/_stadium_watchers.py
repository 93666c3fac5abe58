"""Watcher processes of the stadium benchmark: players watching the leaderboard with
their own token, over SSE through Envoy (one HTTP/1.1 connection each, as browsers
do) and over native gRPC straight to the stream processes (the raw HTTP/2 client of
_fanout_h2, many streams per connection, so that SO_REUSEPORT spreads them).

Each watcher notes (this machine's wall clock) the first frame whose own standing
(`you`) shows points: its player answered correctly, so that frame is the moment
the answer became visible as its own rank. The process reports to the driver:
("ready", index, watchers)                    every watcher has its opening snapshot
("error", index, text)                        a watcher failed
("scored", index, [(time, rank) or None per watcher], messages, cpu_seconds,
 {second: (SSE messages, native messages)})   after the driver asked it to stop
"""

from __future__ import annotations

import asyncio
import multiprocessing.synchronize
import re
import time
from dataclasses import dataclass
from multiprocessing.queues import Queue
from typing import Any

from quizmesh.stream.v1 import stream_pb2

from benchmarks import _fanout_h2 as h2
from benchmarks._fanout_sse import VERSION, Arrivals, SseWatch, open_sse, run_watcher_process
from benchmarks._fanout_watchers import SERVICE, Report

# The own standing the stream service splices into an SSE frame (frames.Standing.json).
YOU = re.compile(rb'"you":\{[^}]*"rank":(\d+),"score":(\d+)\}')


@dataclass(frozen=True)
class StadiumWatcherSpec:
    index: int
    quiz_id: str
    # SSE watchers connect to Envoy; native ones to the stream service's port.
    envoy: tuple[str, int]
    stream: tuple[str, int]
    sse_tokens: tuple[str, ...]
    native_tokens: tuple[str, ...]
    native_connections: int = 8
    ramp: int = 250


class OwnRanks(Arrivals):
    """Arrivals (for the opening snapshots) plus, per watcher, when its `you` first
    showed points and at which rank."""

    def __init__(self, watchers: int, sse: int) -> None:
        super().__init__(watchers)
        self.sse = sse
        self.scored: list[tuple[float, int] | None] = [None] * watchers
        # Boards received per wall-clock second, SSE and native apart (CPU per message).
        self.per_second: dict[int, list[int]] = {}

    def saw(self, watcher: int, version: int, now: float) -> None:
        # Only the first board matters here (ready); not every version is kept.
        self.messages += 1
        counts = self.per_second.setdefault(int(now), [0, 0])
        counts[watcher >= self.sse] += 1
        if self.last[watcher] < 0:
            self.opened += 1
            if self.opened >= self.batch_target:
                self.batch_open.set()
        self.last[watcher] = version

    def standing(self, watcher: int, rank: int, score: int, now: float) -> None:
        if score > 0 and self.scored[watcher] is None:
            self.scored[watcher] = (now, rank)


class OwnRankSse(SseWatch):
    """An SSE watch that reads the `you` of every frame, not just its version."""

    arrivals: OwnRanks

    def _events(self) -> None:
        if b"\n\n" not in self.events:
            return
        *complete, self.events = self.events.split(b"\n\n")
        now = time.time()
        for event in complete:
            found = VERSION.search(event)
            if found is None:
                self.arrivals.messages += 1  # a heartbeat
                continue
            self.arrivals.saw(self.watcher, int(found.group(1)), now)
            you = YOU.search(event)
            if you is not None:
                self.arrivals.standing(self.watcher, int(you.group(1)), int(you.group(2)), now)


async def run(spec: StadiumWatcherSpec, reports: Queue[Report], stop: Any) -> None:
    sse = len(spec.sse_tokens)
    total = sse + len(spec.native_tokens)
    own = OwnRanks(total, sse)
    stopping = False

    def on_end(watcher: int, why: str) -> None:
        if not stopping:
            reports.put(("error", spec.index, f"watcher {watcher}: {why}"))

    def on_message(watcher: int, message: bytes) -> None:
        now = time.time()
        response = stream_pb2.WatchLeaderboardResponse.FromString(message)
        if not response.HasField("snapshot"):
            own.messages += 1  # a heartbeat
            return
        own.saw(watcher, response.snapshot.version, now)
        if response.HasField("you"):
            own.standing(watcher, response.you.rank, response.you.score, now)

    host, port = spec.envoy
    path = f"/v1/quizzes/{spec.quiz_id}/leaderboard:watch"
    watches: list[OwnRankSse] = []
    connections = [
        await h2.connect(*spec.stream, on_message, on_end)
        for _ in range(min(spec.native_connections, len(spec.native_tokens)))
    ]
    request = stream_pb2.WatchLeaderboardRequest(quiz_id=spec.quiz_id).SerializeToString()
    authority = f"{spec.stream[0]}:{spec.stream[1]}"
    try:
        for start in range(0, total, spec.ramp):
            end = min(start + spec.ramp, total)
            own.batch_target = end
            own.batch_open.clear()
            watches += [  # one after the other, as phones connect
                await open_sse(
                    (host, port),
                    path,
                    spec.sse_tokens[i],
                    lambda raw, i=i: OwnRankSse(i, raw, own, on_end),  # type: ignore[misc]
                )
                for i in range(start, min(end, sse))
            ]
            batches: list[list[tuple[int, bytes, bytes]]] = [[] for _ in connections]
            for watcher in range(max(start, sse), end):
                token = spec.native_tokens[watcher - sse]
                headers = h2.request_headers(authority, SERVICE + "WatchLeaderboard", token)
                batches[watcher % len(connections)].append((watcher, headers, request))
            for connection, batch in zip(connections, batches, strict=True):
                if batch:
                    connection.open(batch)
            async with asyncio.timeout(120):
                await own.batch_open.wait()
        reports.put(("ready", spec.index, total))
        await asyncio.to_thread(stop.wait)
    finally:
        stopping = True
        for watch in watches:
            watch.close()
        for connection in connections:
            connection.close()
        reports.put(
            ("scored", spec.index, own.scored, own.messages, time.process_time(), own.per_second)
        )


def main(
    spec: StadiumWatcherSpec, reports: Queue[Report], stop: multiprocessing.synchronize.Event
) -> None:
    """The process's entry point (multiprocessing, spawn)."""
    run_watcher_process(run(spec, reports, stop), reports, spec.index)
