"""Per-quiz hubs: the NATS subscriptions of one quiz, shared by all its watchers.

A hub exists while a quiz has at least one watcher in this process. It holds the
latest leaderboard snapshot and the quiz's lifecycle events, serializes each of
them once, and hands the same bytes to every watcher's outbox.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Protocol

from google.protobuf.message import DecodeError
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError
from prometheus_client import Histogram
from quizmesh.common.v1 import common_pb2, events_pb2
from quizmesh.stream.v1 import stream_pb2

from services.live.board import LiveBoard
from services.mesh import tracing
from services.mesh.clock import now_ms, timestamp
from services.mesh.errors import ResourceExhausted, ServiceError, Unavailable
from services.mesh.messaging import Subjects
from services.mesh.tasks import cancel_and_wait
from services.stream.standings import Standings

log = logging.getLogger(__name__)

# A new hub reads the quiz's past lifecycle events before serving its watchers.
HISTORY_TIMEOUT_SECONDS = 5.0
# How long closing a hub waits for each of its tasks to end.
CLOSE_STEP_SECONDS = 5.0
SHUTTING_DOWN = "this server is shutting down; reconnect to resume"


def is_newer(
    snapshot: common_pb2.LeaderboardSnapshot, than: common_pb2.LeaderboardSnapshot
) -> bool:
    """Version, question and finality only ever grow, so a snapshot ahead on none of
    them is stale or a duplicate (several leaderboard replicas may publish)."""
    mine = (snapshot.version, snapshot.question_index, snapshot.is_final)
    theirs = (than.version, than.question_index, than.is_final)
    return mine != theirs and all(a >= b for a, b in zip(mine, theirs, strict=True))


class Wake:
    """asyncio.Event for one waiter at a time: the hub sets it, the watch's own stream
    waits.

    Every message to every watcher passes through here, so it does less than
    asyncio.Event: no deque of waiters, and the loop is looked up once (asyncio's
    lookup costs a getpid() system call)."""

    __slots__ = ("_is_set", "_loop", "_waiter")

    def __init__(self) -> None:
        self._is_set = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiter: asyncio.Future[None] | None = None

    def is_set(self) -> bool:
        return self._is_set

    def set(self) -> None:
        self._is_set = True
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def clear(self) -> None:
        self._is_set = False

    def wait(self) -> asyncio.Future[None]:
        """Completes once set. A future rather than a coroutine: no frame is kept per
        idle watcher, and none is made per message."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = self._loop.create_future()
        if self._is_set:
            waiter.set_result(None)
        else:
            self._waiter = waiter
        return waiter


class Watch(abc.ABC):
    """One open stream's outbox: its hub fills it, the RPC empties it."""

    __slots__ = ("beat_due", "ended", "quiet_ticks", "wake")

    def __init__(self) -> None:
        self.wake = Wake()
        self.ended: ServiceError | None = None
        # Ticks (every half heartbeat period) since the stream last sent something.
        self.quiet_ticks = 0
        self.beat_due = False

    def tick(self) -> None:
        """Two quiet ticks in a row call for a heartbeat."""
        self.quiet_ticks += 1
        if self.quiet_ticks >= 2:
            self.beat_due = True
            self.wake.set()

    def sending(self) -> None:
        self.quiet_ticks = 0
        self.beat_due = False

    def end(self, reason: ServiceError) -> None:
        if self.ended is None:
            self.ended = reason
        self.wake.set()

    @abc.abstractmethod
    def take(self) -> bytes | None:
        """The next message to send, or None when there is nothing new."""

    @abc.abstractmethod
    def heartbeat(self) -> bytes:
        """A message that only keeps the stream alive."""


class LeaderboardWatch(Watch):
    """A WatchLeaderboard stream; `player_id` is set when a player of the quiz watches."""

    HEARTBEAT = stream_pb2.WatchLeaderboardResponse(heartbeat=True).SerializeToString()

    __slots__ = ("_latest", "player_id")

    def __init__(self, player_id: str | None) -> None:
        super().__init__()
        self.player_id = player_id
        self._latest: bytes | None = None

    def offer(self, message: bytes) -> None:
        # Leaderboards are state, not deltas: a slow watcher skips to the newest.
        self._latest = message
        self.wake.set()

    def offer_first(self, message: bytes) -> None:
        """The opening message, unless a newer snapshot got here first."""
        if self._latest is None:
            self.offer(message)

    def take(self) -> bytes | None:
        message, self._latest = self._latest, None
        return message

    def heartbeat(self) -> bytes:
        return self.HEARTBEAT


class QuizFeed(Protocol):
    """The messages a QuizWatch takes from its hub when it has no event to send."""

    def leaderboard_event(self) -> bytes: ...

    def heartbeat_event(self) -> bytes: ...


class QuizWatch(Watch):
    """A WatchQuiz stream: lifecycle events queue up in order (never dropped), the
    leaderboard is a flag whose message is built when it is sent."""

    __slots__ = ("_events", "_feed", "_leaderboard_changed", "_limit")

    def __init__(self, feed: QuizFeed, replay: list[bytes], limit: int) -> None:
        super().__init__()
        self._feed = feed
        self._events = deque(replay)
        # The replay is already in the hub's memory; only live backlog counts.
        self._limit = len(replay) + limit
        self._leaderboard_changed = True

    def push_event(self, message: bytes) -> None:
        if self.ended is not None:
            return
        if len(self._events) >= self._limit:
            self._events.clear()
            self.end(
                ResourceExhausted(
                    "this watcher fell too far behind; reconnect with after_sequence set "
                    "to the last sequence received"
                )
            )
            return
        self._events.append(message)
        self.wake.set()

    def leaderboard_changed(self) -> None:
        self._leaderboard_changed = True
        self.wake.set()

    def take(self) -> bytes | None:
        if self._events:
            return self._events.popleft()
        if self._leaderboard_changed:
            # Built only once the queue is empty, so it carries the sequence of the
            # last event this watcher was sent, and sequences never go backwards.
            self._leaderboard_changed = False
            return self._feed.leaderboard_event()
        return None

    def heartbeat(self) -> bytes:
        return self._feed.heartbeat_event()


class QuizHub:
    """Starts subscribing as soon as it is made; `ready` completes when it can serve."""

    def __init__(
        self,
        quiz_id: str,
        board: LiveBoard,
        nc: NatsClient,
        js: JetStreamContext,
        subjects: Subjects,
        top: int,
        max_queued_events: int,
        answer_to_watchers: Histogram,
        board_interval_seconds: float = 0.0,
    ) -> None:
        self.answer_to_watchers = answer_to_watchers
        self.quiz_id = quiz_id
        self.board = board
        self.nc = nc
        self.js = js
        self.subjects = subjects
        self.top = top
        self.max_queued_events = max_queued_events
        self.standings = Standings(board, quiz_id)
        self.board_interval = board_interval_seconds
        self._board_sent_at = float("-inf")
        self._board_timer: asyncio.TimerHandle | None = None
        # The changed_at of the last board sent (None before the hub's first one).
        self._board_changed_ms: int | None = None
        # Streams that use this hub, counted from before it has started.
        self.users = 0
        self._snapshot = common_pb2.LeaderboardSnapshot(quiz_id=quiz_id, question_index=-1)
        self._have_snapshot = False
        self._leaderboard_message = b""
        self._leaderboard_event: bytes | None = None
        self._heartbeat_event: bytes | None = None
        self._events: list[tuple[int, bytes]] = []
        self._last_sequence = 0
        self._history_end = 0
        self._history_loaded = asyncio.Event()
        self._spectators: set[LeaderboardWatch] = set()
        self._players: set[LeaderboardWatch] = set()
        self._quiz_watches: set[QuizWatch] = set()
        self._subscriptions: list[Subscription] = []
        self._standings_due = asyncio.Event()
        self._standings_task: asyncio.Task[None] | None = None
        self._closed = False
        self.ready = asyncio.create_task(self._start(), name=f"hub-{quiz_id}")

    async def _start(self) -> None:
        # Subscribe before reading, so that no snapshot slips between the two.
        self._subscriptions.append(
            await self.nc.subscribe(self.subjects.leaderboard(self.quiz_id), cb=self._on_snapshot)
        )
        snapshot = await self.board.snapshot(self.quiz_id, self.top)
        # Not live (a watch raced its expiry): watchers start from an empty board.
        self._accept_snapshot(snapshot or common_pb2.LeaderboardSnapshot(quiz_id=self.quiz_id))
        await self._load_history()
        self._standings_task = asyncio.create_task(
            self._send_standings(), name=f"standings-{self.quiz_id}"
        )

    async def _load_history(self) -> None:
        """Subscribes to the quiz's lifecycle events from the first one; returns once
        every event that existed at subscription time has arrived."""
        stream = self.subjects.events_stream
        subject = self.subjects.events(self.quiz_id)
        try:
            last = await self.js.get_last_msg(stream, subject)
        except NotFoundError:
            self._history_loaded.set()
        else:
            self._history_end = last.seq or 0
        self._subscriptions.append(
            await self.js.subscribe(
                subject,
                stream=stream,
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.ALL,
                cb=self._on_event,
            )
        )
        async with asyncio.timeout(HISTORY_TIMEOUT_SECONDS):
            await self._history_loaded.wait()

    async def close(self) -> None:
        """Idempotent: stops the subscriptions; watchers still open must be ended first."""
        if self._closed:
            return
        self._closed = True
        if self._board_timer is not None:
            self._board_timer.cancel()
        # `ready` first: a start that finishes anyway (a NATS call can swallow the
        # cancel) has made the standings task by the time it is looked at.
        await cancel_and_wait([self.ready], CLOSE_STEP_SECONDS)
        if self._standings_task is not None:
            await cancel_and_wait([self._standings_task], CLOSE_STEP_SECONDS)
        for subscription in self._subscriptions:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        self._subscriptions.clear()

    # Watchers.

    def watch_leaderboard(self, player_id: str | None) -> LeaderboardWatch:
        watch = LeaderboardWatch(player_id)
        if player_id is None:
            self._spectators.add(watch)
            watch.offer(self._leaderboard_message)
        else:
            self._players.add(watch)
        return watch

    async def greet(self, watch: LeaderboardWatch) -> None:
        """A player's opening message: the current snapshot plus their own standing."""
        if watch.player_id is None:
            return
        message = self._leaderboard_message
        try:
            yours = await self.standings.yours([watch.player_id], self._snapshot.total_players)
        except Exception as e:
            log.warning("standing not read", extra={"quiz_id": self.quiz_id, "error": repr(e)})
            yours = {}
        watch.offer_first(message + yours.get(watch.player_id, b""))

    def watch_quiz(self, after_sequence: int) -> QuizWatch:
        replay = [message for sequence, message in self._events if sequence > after_sequence]
        watch = QuizWatch(self, replay, self.max_queued_events)
        self._quiz_watches.add(watch)
        return watch

    def forget(self, watch: Watch) -> None:
        if isinstance(watch, LeaderboardWatch):
            self._spectators.discard(watch)
            self._players.discard(watch)
            if watch.player_id is not None:
                self.standings.forget(watch.player_id)
        elif isinstance(watch, QuizWatch):
            self._quiz_watches.discard(watch)

    def end_watches(self, reason: ServiceError) -> None:
        for watch in (*self._spectators, *self._players, *self._quiz_watches):
            watch.end(reason)

    # Messages, each serialized once for every watcher.

    def leaderboard_event(self) -> bytes:
        if self._leaderboard_event is None:
            event = events_pb2.QuizEvent(
                quiz_id=self.quiz_id,
                sequence=self._last_sequence,
                time=timestamp(now_ms()),
                leaderboard_changed=self._snapshot,
            )
            self._leaderboard_event = stream_pb2.WatchQuizResponse(event=event).SerializeToString()
        return self._leaderboard_event

    def heartbeat_event(self) -> bytes:
        if self._heartbeat_event is None:
            event = events_pb2.QuizEvent(
                quiz_id=self.quiz_id,
                sequence=self._last_sequence,
                heartbeat=events_pb2.Heartbeat(),
            )
            self._heartbeat_event = stream_pb2.WatchQuizResponse(event=event).SerializeToString()
        return self._heartbeat_event

    # NATS.

    async def _on_snapshot(self, msg: Msg) -> None:
        try:
            snapshot = common_pb2.LeaderboardSnapshot.FromString(msg.data)
        except DecodeError:
            log.warning("undecodable snapshot dropped", extra={"quiz_id": self.quiz_id})
            return
        self._accept_snapshot(snapshot)

    def _accept_snapshot(self, snapshot: common_pb2.LeaderboardSnapshot) -> None:
        if snapshot.quiz_id != self.quiz_id:
            return
        if self._have_snapshot and not is_newer(snapshot, self._snapshot):
            return
        self._have_snapshot = True
        self._snapshot = snapshot
        self._leaderboard_message = stream_pb2.WatchLeaderboardResponse(
            snapshot=snapshot
        ).SerializeToString()
        self._leaderboard_event = None
        self._send_board()

    def _send_board(self) -> None:
        """The latest board to every watcher; with a board interval, at most once per
        interval (later boards replace one that waits: fewer messages for this
        process, Envoy and every client, for at most that much delay)."""
        if self.board_interval > 0:
            loop = asyncio.get_running_loop()
            wait = self._board_sent_at + self.board_interval - loop.time()
            if wait > 0:
                if self._board_timer is None:
                    self._board_timer = loop.call_later(wait, self._board_due)
                return
            self._board_sent_at = loop.time()
        changed = self._snapshot.changed_at.ToMilliseconds()
        if self._board_changed_ms is not None and changed > self._board_changed_ms:
            # A new answer's board, measured as it leaves for every watcher's outbox.
            self.answer_to_watchers.observe(max(0, now_ms() - changed) / 1000)
        self._board_changed_ms = changed
        for spectator in self._spectators:
            spectator.offer(self._leaderboard_message)
        for watch in self._quiz_watches:
            watch.leaderboard_changed()
        if self._players:
            self._standings_due.set()

    def _board_due(self) -> None:
        self._board_timer = None
        self._send_board()

    async def _on_event(self, msg: Msg) -> None:
        sequence = msg.metadata.sequence.stream
        # An ordered consumer that recovers from a gap may deliver a message again.
        if sequence <= self._last_sequence:
            return
        self._last_sequence = sequence
        try:
            event = events_pb2.QuizEvent.FromString(msg.data)
        except DecodeError:
            log.warning(
                "undecodable lifecycle event skipped",
                extra={"quiz_id": self.quiz_id, "sequence": sequence},
            )
        else:
            event.sequence = sequence
            message = stream_pb2.WatchQuizResponse(event=event).SerializeToString()
            self._events.append((sequence, message))
            for watch in self._quiz_watches:
                watch.push_event(message)
            # Logged under the trace of the request that caused the event.
            trace = tracing.begin(tracing.from_headers(msg.headers) or tracing.new_id())
            try:
                log.info(
                    "lifecycle event to watchers",
                    extra={
                        "quiz_id": self.quiz_id,
                        "sequence": sequence,
                        "kind": event.WhichOneof("kind"),
                        "watchers": len(self._quiz_watches),
                    },
                )
            finally:
                tracing.end(trace)
        self._leaderboard_event = None
        self._heartbeat_event = None
        if sequence >= self._history_end:
            self._history_loaded.set()

    async def _send_standings(self) -> None:
        """Per snapshot, every watching player's rank and score in one Redis round trip;
        the shared snapshot bytes are reused and only `you` is added per player."""
        while not self._closed:
            await self._standings_due.wait()
            self._standings_due.clear()
            watches = list(self._players)
            if not watches:
                continue
            shared = self._leaderboard_message
            player_ids = list({w.player_id for w in watches if w.player_id is not None})
            try:
                yours = await self.standings.yours(player_ids, self._snapshot.total_players)
            except Exception as e:
                # Better the board without `you` than no board at all.
                log.warning("standings not read", extra={"quiz_id": self.quiz_id, "error": repr(e)})
                yours = {}
            for watch in watches:
                watch.offer(shared + yours.get(watch.player_id or "", b""))


class QuizHubs:
    """The hubs of the quizzes this process has watchers for."""

    def __init__(self, new_hub: Callable[[str], QuizHub]) -> None:
        """`new_hub(quiz_id)` makes (and starts) a quiz's hub."""
        self._new_hub = new_hub
        self._hubs: dict[str, QuizHub] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._stopping = False

    @property
    def active(self) -> int:
        return len(self._hubs)

    def watching(self, quiz_id: str) -> bool:
        """True while this process has a hub for the quiz."""
        return quiz_id in self._hubs

    async def acquire(self, quiz_id: str) -> QuizHub:
        """The quiz's started hub; the caller must `release` it when its stream ends."""
        if self._stopping:
            raise Unavailable(SHUTTING_DOWN)
        hub = self._hubs.get(quiz_id)
        if hub is None:
            hub = self._new_hub(quiz_id)
            self._hubs[quiz_id] = hub
        hub.users += 1
        try:
            # Shielded: one watcher giving up must not cancel a start others wait for.
            await asyncio.shield(hub.ready)
        except asyncio.CancelledError:
            await self.release(hub)
            if hub.ready.cancelled():  # closed while starting: the server is stopping
                raise Unavailable(SHUTTING_DOWN) from None
            raise
        except Exception as e:
            await self.release(hub)
            log.warning("quiz hub did not start", extra={"quiz_id": quiz_id, "error": repr(e)})
            raise Unavailable(
                f"live updates of quiz {quiz_id} are not available right now; retry"
            ) from e
        if self._stopping:
            await self.release(hub)
            raise Unavailable(SHUTTING_DOWN)
        return hub

    async def release(self, hub: QuizHub) -> None:
        hub.users -= 1
        if hub.users > 0:
            return
        if self._hubs.get(hub.quiz_id) is hub:
            del self._hubs[hub.quiz_id]
        # Shielded and referenced, so a cancelled stream still tears its hub down.
        closing = asyncio.create_task(hub.close())
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)
        await asyncio.shield(closing)

    async def close(self) -> None:
        """Ends every open stream promptly, so clients reconnect to another replica."""
        self._stopping = True
        hubs = list(self._hubs.values())
        self._hubs.clear()
        for hub in hubs:
            hub.end_watches(Unavailable(SHUTTING_DOWN))
        await asyncio.gather(*(hub.close() for hub in hubs), *self._closing)
