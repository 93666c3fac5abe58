"""Per-quiz hubs: the NATS subscriptions of one quiz, shared by all its watchers.

A hub exists while a quiz has at least one watcher in this process. It holds the
latest leaderboard snapshot and the quiz's lifecycle events, serializes each of
them once per wire format (frames.py), and hands the same frame to every watcher's
outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

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
from services.live.pace import BoardPace
from services.mesh import tracing
from services.mesh.clock import now_ms, timestamp
from services.mesh.errors import Reason, ServiceError, Unavailable
from services.mesh.messaging import Subjects
from services.mesh.tasks import cancel_and_wait
from services.stream.board_copy import BoardCopy
from services.stream.frames import Frame, board_frame, quiz_frame
from services.stream.standings import Standings
from services.stream.watches import LeaderboardWatch, QuizWatch, Watch

# Without a pace (tests), every snapshot goes to the watchers as it arrives.
EVERY_SNAPSHOT = BoardPace(0.0, 0.0, 0)

log = logging.getLogger(__name__)

# A new hub reads the quiz's past lifecycle events before serving its watchers.
HISTORY_TIMEOUT_SECONDS = 5.0
# How long closing a hub waits for each of its tasks to end.
CLOSE_STEP_SECONDS = 5.0
SHUTTING_DOWN = "this server is shutting down; reconnect to resume"


def is_newer(
    snapshot: common_pb2.LeaderboardSnapshot, than: common_pb2.LeaderboardSnapshot
) -> bool:
    """Every change of what a snapshot shows steps its version (common.proto), so one
    not ahead of it is stale or a duplicate (several leaderboard replicas publish)."""
    return snapshot.version > than.version


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
        own_ranks: dict[str, int] | None = None,
        pace: BoardPace = EVERY_SNAPSHOT,
    ) -> None:
        self.answer_to_watchers = answer_to_watchers
        self.quiz_id = quiz_id
        self.board = board
        self.nc = nc
        self.js = js
        self.subjects = subjects
        self.top = top
        self.max_queued_events = max_queued_events
        self.copy = BoardCopy(board, quiz_id)
        self.standings = Standings(board, self.copy, quiz_id, own_ranks)
        self.pace = pace
        self._board_sent_at = float("-inf")
        self._board_timer: asyncio.TimerHandle | None = None
        # The changed_at of the last board sent (None before the hub's first one).
        self._board_changed_ms: int | None = None
        # Streams that use this hub, counted from before it has started.
        self.users = 0
        self._snapshot = common_pb2.LeaderboardSnapshot(quiz_id=quiz_id, question_index=-1)
        self._have_snapshot = False
        self._leaderboard_message = board_frame(stream_pb2.WatchLeaderboardResponse())
        self._leaderboard_event: Frame | None = None
        self._events: list[tuple[int, Frame]] = []
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
            await self.nc.subscribe(self.subjects.leaderboard(self.quiz_id), cb=self._on_update)
        )
        self.copy.start()
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
        await self.copy.close()
        for subscription in self._subscriptions:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        self._subscriptions.clear()

    # Watchers.

    def watch_leaderboard(self, player_id: str | None, sse: bool = False) -> LeaderboardWatch:
        watch = LeaderboardWatch(player_id, sse)
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
        frame = self._leaderboard_message
        try:
            yours = await self.standings.yours([watch.player_id], self._snapshot.total_players)
        except Exception as e:
            log.warning("standing not read", extra={"quiz_id": self.quiz_id, "error": repr(e)})
            yours = {}
        watch.offer_first(frame, yours.get(watch.player_id))

    def watch_quiz(self, after_sequence: int, sse: bool = False) -> QuizWatch:
        replay = [frame for sequence, frame in self._events if sequence > after_sequence]
        watch = QuizWatch(self, replay, self.max_queued_events, sse)
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

    def leaderboard_event(self) -> Frame:
        if self._leaderboard_event is None:
            event = events_pb2.QuizEvent(
                quiz_id=self.quiz_id,
                sequence=self._last_sequence,
                time=timestamp(now_ms()),
                leaderboard_changed=self._snapshot,
            )
            self._leaderboard_event = quiz_frame(stream_pb2.WatchQuizResponse(event=event))
        return self._leaderboard_event

    # NATS.

    async def _on_update(self, msg: Msg) -> None:
        try:
            update = events_pb2.BoardUpdate.FromString(msg.data)
        except DecodeError:
            log.warning("undecodable board update dropped", extra={"quiz_id": self.quiz_id})
            return
        self.copy.on_update(update)
        if update.HasField("snapshot"):
            self._accept_snapshot(update.snapshot)

    def _accept_snapshot(self, snapshot: common_pb2.LeaderboardSnapshot) -> None:
        if snapshot.quiz_id != self.quiz_id:
            return
        if self._have_snapshot and not is_newer(snapshot, self._snapshot):
            return
        self._have_snapshot = True
        self._snapshot = snapshot
        self._leaderboard_message = board_frame(
            stream_pb2.WatchLeaderboardResponse(snapshot=snapshot)
        )
        self._leaderboard_event = None
        self._send_board()

    def _send_board(self) -> None:
        """The latest board to every watcher, at most once per interval of the quiz's
        pace (later boards replace one that waits: fewer messages for this process,
        Envoy and every client, for at most that much delay)."""
        interval = self.pace.interval_for(self._snapshot.total_players)
        if interval > 0:
            loop = asyncio.get_running_loop()
            wait = self._board_sent_at + interval - loop.time()
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
            frame = quiz_frame(stream_pb2.WatchQuizResponse(event=event))
            self._events.append((sequence, frame))
            for watch in self._quiz_watches:
                watch.push_event(frame)
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
        if sequence >= self._history_end:
            self._history_loaded.set()

    async def _send_standings(self) -> None:
        """Per snapshot, every watching player's rank and score (standings.py); the
        shared snapshot frame is reused and only `you` is added per player."""
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
                watch.offer(shared, yours.get(watch.player_id or ""))


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
            raise Unavailable(SHUTTING_DOWN, Reason.ERROR_REASON_SHUTTING_DOWN)
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
                raise Unavailable(SHUTTING_DOWN, Reason.ERROR_REASON_SHUTTING_DOWN) from None
            raise
        except Exception as e:
            await self.release(hub)
            log.warning("quiz hub did not start", extra={"quiz_id": quiz_id, "error": repr(e)})
            raise Unavailable(
                f"live updates of quiz {quiz_id} are not available right now; retry",
                Reason.ERROR_REASON_LIVE_UPDATES_UNAVAILABLE,
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
            hub.end_watches(Unavailable(SHUTTING_DOWN, Reason.ERROR_REASON_SHUTTING_DOWN))
        await asyncio.gather(*(hub.close() for hub in hubs), *self._closing)
