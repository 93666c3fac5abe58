"""One open stream's outbox: its quiz's hub fills it, the RPC empties it.

Every message to every watcher passes through here, so these classes keep to
slots and plain attributes; a LeaderboardWatch keeps only the newest board (state,
not deltas), a QuizWatch queues lifecycle events in order and never drops one.
"""

from __future__ import annotations

import abc
import asyncio
from collections import deque
from typing import Protocol

from quizmesh.stream.v1 import stream_pb2

from services.mesh.errors import Reason, ResourceExhausted, ServiceError


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
    """The message a QuizWatch takes from its hub when the board changed."""

    def leaderboard_event(self) -> bytes: ...


class QuizWatch(Watch):
    """A WatchQuiz stream: lifecycle events queue up in order (never dropped), the
    leaderboard is a flag whose message is built when it is sent."""

    # The same shape as a board watch's heartbeat: {"heartbeat": true}.
    HEARTBEAT = stream_pb2.WatchQuizResponse(heartbeat=True).SerializeToString()

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
                    "to the last sequence received",
                    Reason.ERROR_REASON_WATCHER_TOO_SLOW,
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
        return self.HEARTBEAT
