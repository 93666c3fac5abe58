"""Coalesced leaderboard snapshots: many board changes, one Redis read per quiz per tick.

Every answer, join or lifecycle event only marks its quiz dirty. The loop then reads
each dirty quiz's top once and publishes it on NATS, so a burst of a thousand
answers costs a few snapshots, and a quiz nobody touches costs nothing. With the
top goes what changed on the board since the last tick (a BoardUpdate): each
stream process keeps its own copy of the board from these and ranks its watchers
itself, so what Redis does per snapshot does not grow with the watchers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from services.live.board import LiveBoard
from services.mesh.messaging import Subjects

log = logging.getLogger(__name__)

# Replicas share the work: each change reaches one of them, and watchers drop
# snapshots whose version they have already seen.
QUEUE_GROUP = "leaderboard"
# What marks a quiz dirty: board hints (from the score service per burst of answers,
# from the quiz service per join) and lifecycle events.
CHANGE_KINDS = ("board", "events")
# Bounds the Redis connections one tick may open when many quizzes are live.
MAX_CONCURRENT_READS = 32
# Changes per BoardUpdate: Redis's Lua unpacks fewer than 8,000 values at once,
# and a message stays ~150 KB (NATS refuses more than 1 MB by default).
MOST_CHANGES = 5_000


@dataclass
class SnapshotCoalescer:
    nc: NatsClient
    board: LiveBoard
    subjects: Subjects
    interval: float
    top: int
    _dirty: set[str] = field(default_factory=set)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    # Quizzes whose last snapshot failed: logged once, retried every tick.
    _failing: set[str] = field(default_factory=set)

    async def run(self) -> None:
        """Publishes snapshots until cancelled (a ServiceApp background job)."""
        subscriptions: list[Subscription] = []
        try:
            for kind in CHANGE_KINDS:
                subscription = await self.nc.subscribe(
                    self.subjects.all(kind), queue=QUEUE_GROUP, cb=self._mark_dirty
                )
                subscriptions.append(subscription)
            while True:
                # The first change after a quiet spell is published at once; later
                # ones wait for the next tick, which is where bursts are merged.
                await self._changed.wait()
                self._changed.clear()
                await self.publish_dirty()
                await asyncio.sleep(self.interval)
        finally:
            for subscription in subscriptions:
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()

    def mark_dirty(self, quiz_id: str) -> None:
        self._dirty.add(quiz_id)
        self._changed.set()

    async def _mark_dirty(self, msg: Msg) -> None:
        self.mark_dirty(Subjects.quiz_of(msg.subject))

    async def publish_dirty(self) -> None:
        """One snapshot for every quiz that changed since the last call."""
        dirty, self._dirty = self._dirty, set()
        limit = asyncio.Semaphore(MAX_CONCURRENT_READS)

        async def publish(quiz_id: str) -> None:
            async with limit:
                try:
                    await self._publish(quiz_id)
                except Exception:
                    if quiz_id not in self._failing:
                        log.exception("snapshot not published", extra={"quiz_id": quiz_id})
                        self._failing.add(quiz_id)
                    # Retried next tick: otherwise watchers would keep a stale board
                    # until the quiz happens to change again.
                    self.mark_dirty(quiz_id)
                else:
                    if quiz_id in self._failing:
                        log.info("snapshot published again", extra={"quiz_id": quiz_id})
                        self._failing.discard(quiz_id)

        await asyncio.gather(*(publish(quiz_id) for quiz_id in dirty))

    async def _publish(self, quiz_id: str) -> None:
        """Every change since the last update, in parts, the last with the snapshot."""
        subject = self.subjects.leaderboard(quiz_id)
        while True:
            update = await self.board.take_update(quiz_id, self.top, MOST_CHANGES)
            if update is None:
                return  # not live (lost, or expired): nothing to show
            # Taken changes are gone from Redis: a part that fails to go out leaves
            # a gap, after which the copies read the board afresh.
            await self.nc.publish(subject, update.SerializeToString())
            if update.complete:
                return
