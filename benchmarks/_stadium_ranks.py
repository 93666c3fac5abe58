"""The stadium's unconnected players: every enrolled player's own rank, worked out
per snapshot by the code that serves real watchers, counted instead of sent.

A process of its own (so that its CPU is measured apart from the driver's) does what
a stream process's hub does for its watching players (services/stream/hub.py): a
BoardCopy kept level from the leaderboard's BoardUpdates on NATS, and per board
(at most one per board interval, the pace the hub sends boards at), Standings.yours
for all of them: the copy's LocalBoard ranks, the reused or new `you` of each. What
the hub then does per watcher (offer the frame to its outbox) is the fan-out,
measured on the real watchers; here the `you`s are counted. Reports to the driver:
("ranker-ready",)                             the copy is level and ranked once
("error", text)
("ranks", rounds, snapshots, applies, skipped, reads)   after the driver asked it to stop:
    rounds    [(wall time at the end, CPU s, ranks computed, players asked, wall s)]
    snapshots [(wall time, version)]          each BoardUpdate carrying a snapshot
    applies   [(wall time, changes, CPU s)]   each BoardUpdate applied to the copy
    skipped   [wall time]                     boards not ranked: the copy not level
    reads     how often the copy was read whole
"""

from __future__ import annotations

import asyncio
import multiprocessing.synchronize
import time
from dataclasses import dataclass
from multiprocessing.queues import Queue

import nats
from nats.aio.msg import Msg
from quizmesh.common.v1 import events_pb2

from benchmarks._fanout_watchers import Report
from services.live.board import LiveBoard
from services.live.pipeline import PipelinedRedis, RedisAddress
from services.mesh.messaging import Subjects
from services.stream.board_copy import BoardCopy
from services.stream.standings import Standings


@dataclass(frozen=True)
class RankerSpec:
    redis_url: str
    nats_url: str
    key_prefix: str
    nats_prefix: str
    quiz_id: str
    player_ids: tuple[str, ...]
    board_interval: float


async def run(
    spec: RankerSpec, reports: Queue[Report], stop: multiprocessing.synchronize.Event
) -> None:
    pipe = PipelinedRedis(RedisAddress.parse(spec.redis_url), timeout=30.0)
    board = LiveBoard(pipe, spec.key_prefix)
    copy = BoardCopy(board, spec.quiz_id)
    standings = Standings(board, copy, spec.quiz_id)
    nc = await nats.connect(spec.nats_url)
    player_ids = list(spec.player_ids)
    rounds: list[tuple[float, float, int, int, float]] = []
    snapshots: list[tuple[float, int]] = []
    applies: list[tuple[float, int, float]] = []
    skipped: list[float] = []
    apply_cpu = 0.0
    total_players = 0
    due = asyncio.Event()

    async def on_update(msg: Msg) -> None:
        nonlocal apply_cpu, total_players
        update = events_pb2.BoardUpdate.FromString(msg.data)
        began = time.process_time()
        copy.on_update(update)
        spent = time.process_time() - began
        apply_cpu += spent
        now = time.time()
        applies.append((now, len(update.player_ids) + len(update.removed), spent))
        if update.HasField("snapshot"):
            snapshots.append((now, update.snapshot.version))
            total_players = update.snapshot.total_players
            due.set()

    subject = Subjects(spec.nats_prefix).leaderboard(spec.quiz_id)
    subscription = await nc.subscribe(subject, cb=on_update)
    copy.start()
    ready = False
    stopping = asyncio.ensure_future(asyncio.to_thread(stop.wait))
    try:
        while not stopping.done():
            waiting = asyncio.ensure_future(due.wait())
            await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            if not due.is_set():
                continue
            due.clear()
            began, apply_before, wall = time.process_time(), apply_cpu, time.time()
            yours = await standings.yours(player_ids, total_players)
            # Updates applied while the first round read nicknames are not ranking.
            spent = time.process_time() - began - (apply_cpu - apply_before)
            if not yours:  # the copy is not level: nothing ranked (as a hub)
                skipped.append(time.time())
                continue
            ranked = sum(1 for you in yours.values() if you is not None)
            rounds.append((time.time(), spent, ranked, len(player_ids), time.time() - wall))
            if not ready:
                ready = True
                reports.put(("ranker-ready",))
            # The hub's pace: at most one board per interval.
            await asyncio.sleep(spec.board_interval)
    finally:
        await subscription.unsubscribe()
        await copy.close()
        await nc.close()
        await pipe.close()
        reports.put(("ranks", rounds, snapshots, applies, skipped, copy.reads))


def main(spec: RankerSpec, reports: Queue[Report], stop: multiprocessing.synchronize.Event) -> None:
    """The process's entry point (multiprocessing, spawn)."""
    try:
        import uvloop

        uvloop.run(run(spec, reports, stop))
    except BaseException as e:
        reports.put(("error", repr(e)))
        raise
