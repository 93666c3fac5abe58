"""Coalesced leaderboard snapshots: many board changes, one Redis read per quiz per
interval of its pace (services/live/pace.py).

Every answer, join or lifecycle event only marks its quiz dirty. A timer per dirty
quiz then reads its top once and publishes it on NATS, so a burst of a thousand
answers costs a few snapshots, and a quiz nobody touches costs nothing. With the
top goes what changed on the board since the last snapshot (a BoardUpdate): each
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
from services.live.pace import BoardPace
from services.mesh.messaging import Subjects

log = logging.getLogger(__name__)

# Replicas share the work: each change reaches one of them, and watchers drop
# snapshots whose version they have already seen.
QUEUE_GROUP = "leaderboard"
# What marks a quiz dirty: board hints (from the score service per burst of answers,
# from the quiz service per join) and lifecycle events.
CHANGE_KINDS = ("board", "events")
# Bounds the Redis reads in flight when many quizzes are due at once.
MAX_CONCURRENT_READS = 32
# Changes per BoardUpdate: Redis's Lua unpacks fewer than 8,000 values at once,
# and a message stays ~150 KB (NATS refuses more than 1 MB by default).
MOST_CHANGES = 5_000


@dataclass
class SnapshotCoalescer:
    nc: NatsClient
    board: LiveBoard
    subjects: Subjects
    pace: BoardPace
    top: int
    # Quizzes with a snapshot scheduled.
    _due: dict[str, asyncio.TimerHandle] = field(default_factory=dict)
    # When each quiz's last snapshot started, and the interval its size calls for
    # after it. Only entries younger than their interval matter: older ones are
    # pruned, and such a quiz's next change is published at once.
    _last: dict[str, tuple[float, float]] = field(default_factory=dict)
    # Quizzes being published; a change meanwhile is published after it.
    _running: set[str] = field(default_factory=set)
    _again: set[str] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _limit: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(MAX_CONCURRENT_READS)
    )
    # Quizzes whose last snapshot failed: logged once, retried at the quiz's pace.
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
            await asyncio.Future()  # the timers and tasks do the work
        finally:
            for subscription in subscriptions:
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()
            for timer in self._due.values():
                timer.cancel()
            self._due.clear()
            for task in self._tasks:
                task.cancel()

    def mark_dirty(self, quiz_id: str) -> None:
        """A snapshot of the quiz at once if its last one is older than its pace
        allows, else when that interval is over: the first change after a quiet spell
        goes out at once, later ones are merged into the next."""
        if quiz_id in self._due:
            return
        if quiz_id in self._running:
            self._again.add(quiz_id)
            return
        loop = asyncio.get_running_loop()
        last = self._last.get(quiz_id)
        at = loop.time() if last is None else last[0] + last[1]
        self._due[quiz_id] = loop.call_at(at, self._start, quiz_id)

    async def _mark_dirty(self, msg: Msg) -> None:
        self.mark_dirty(Subjects.quiz_of(msg.subject))

    def _start(self, quiz_id: str) -> None:
        del self._due[quiz_id]
        self._running.add(quiz_id)
        task = asyncio.create_task(self._publish_now(quiz_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish_now(self, quiz_id: str) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        # Until its size is known, a quiz is small: new quizzes are.
        players = 0
        try:
            async with self._limit:
                players = await self._publish(quiz_id)
        except Exception:
            if quiz_id not in self._failing:
                log.exception("snapshot not published", extra={"quiz_id": quiz_id})
                self._failing.add(quiz_id)
            # Retried: otherwise watchers would keep a stale board until the quiz
            # happens to change again.
            self._again.add(quiz_id)
        else:
            if quiz_id in self._failing:
                log.info("snapshot published again", extra={"quiz_id": quiz_id})
                self._failing.discard(quiz_id)
        finally:
            self._running.discard(quiz_id)
        self._last[quiz_id] = (started, self.pace.interval_for(players))
        self._prune(loop.time())
        if quiz_id in self._again:
            self._again.discard(quiz_id)
            self.mark_dirty(quiz_id)

    def _prune(self, now: float) -> None:
        # Amortized: a sweep only once the table has doubled since the last one.
        if len(self._last) <= 2 * (len(self._due) + len(self._running)) + 64:
            return
        self._last = {q: last for q, last in self._last.items() if last[0] + last[1] > now}

    async def _publish(self, quiz_id: str) -> int:
        """Every change since the last update, in parts, the last with the snapshot;
        returns how many players the quiz has (0 when it is not live)."""
        subject = self.subjects.leaderboard(quiz_id)
        while True:
            update = await self.board.take_update(quiz_id, self.top, MOST_CHANGES)
            if update is None:
                return 0  # not live (lost, or expired): nothing to show
            # Taken changes are gone from Redis: a part that fails to go out leaves
            # a gap, after which the copies read the board afresh.
            await self.nc.publish(subject, update.SerializeToString())
            if update.complete:
                return update.snapshot.total_players
