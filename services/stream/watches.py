"""One open stream's outbox: its quiz's hub fills it, the RPC empties it.

Every message to every watcher passes through here, so these classes keep to
slots and plain attributes; a LeaderboardWatch keeps only the newest board (state,
not deltas), a QuizWatch queues lifecycle events in order and never drops one. They
hold frames (frames.py) and take out the bytes of their stream's wire format: gRPC
(protobuf) or SSE (for browsers).
"""

from __future__ import annotations

import abc
import asyncio
from collections import deque
from typing import Protocol

from services.mesh.errors import Reason, ResourceExhausted, ServiceError
from services.stream.frames import BOARD_HEARTBEAT, QUIZ_HEARTBEAT, Frame, Standing


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

    __slots__ = ("beat_due", "ended", "quiet_ticks", "sse", "wake")

    def __init__(self, sse: bool) -> None:
        self.sse = sse
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

    __slots__ = ("_latest", "_you", "player_id")

    def __init__(self, player_id: str | None, sse: bool = False) -> None:
        super().__init__(sse)
        self.player_id = player_id
        self._latest: Frame | None = None
        self._you: Standing | None = None

    def offer(self, frame: Frame, you: Standing | None = None) -> None:
        # Leaderboards are state, not deltas: a slow watcher skips to the newest.
        self._latest = frame
        self._you = you
        self.wake.set()

    def offer_first(self, frame: Frame, you: Standing | None) -> None:
        """The opening message, unless a newer snapshot got here first."""
        if self._latest is None:
            self.offer(frame, you)

    def take(self) -> bytes | None:
        frame, self._latest = self._latest, None
        if frame is None:
            return None
        you = self._you
        if self.sse:
            return frame.sse() if you is None else frame.sse_with(you)
        return frame.proto if you is None else frame.proto + you.proto

    def heartbeat(self) -> bytes:
        return BOARD_HEARTBEAT.sse() if self.sse else BOARD_HEARTBEAT.proto


class QuizFeed(Protocol):
    """The message a QuizWatch takes from its hub when the board changed."""

    def leaderboard_event(self) -> Frame: ...


class QuizWatch(Watch):
    """A WatchQuiz stream: lifecycle events queue up in order (never dropped), the
    leaderboard is a flag whose message is built when it is sent."""

    __slots__ = ("_events", "_feed", "_leaderboard_changed", "_limit")

    def __init__(self, feed: QuizFeed, replay: list[Frame], limit: int, sse: bool = False) -> None:
        super().__init__(sse)
        self._feed = feed
        self._events = deque(replay)
        # The replay is already in the hub's memory; only live backlog counts.
        self._limit = len(replay) + limit
        self._leaderboard_changed = True

    def push_event(self, frame: Frame) -> None:
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
        self._events.append(frame)
        self.wake.set()

    def leaderboard_changed(self) -> None:
        self._leaderboard_changed = True
        self.wake.set()

    def take(self) -> bytes | None:
        if self._events:
            frame = self._events.popleft()
        elif self._leaderboard_changed:
            # Built only once the queue is empty, so it carries the sequence of the
            # last event this watcher was sent, and sequences never go backwards.
            self._leaderboard_changed = False
            frame = self._feed.leaderboard_event()
        else:
            return None
        return frame.sse() if self.sse else frame.proto

    def heartbeat(self) -> bytes:
        return QUIZ_HEARTBEAT.sse() if self.sse else QUIZ_HEARTBEAT.proto
