"""Hints to the leaderboard service that a quiz's board changed, at most one per quiz
per `interval` from this process.

The leaderboard used to learn of answers by receiving every answer record (core
NATS, with its headers), which cost it and nats-server more per answer than the
Redis script (benchmarks/stadium.py: 47 µs of leaderboard CPU per answer). It only
needs to know which quizzes to snapshot on its next tick (every 250 ms), so a burst
of answers becomes one hint at once and one at the end of each interval. The board
itself is read from Redis at snapshot time, so a hint carries nothing but the quiz.
Like any core NATS message a hint can be lost; the next change of the quiz brings
the snapshot up to date, as before.
"""

from __future__ import annotations

import asyncio
import logging
import time

from nats.aio.client import Client as NatsClient

from services.mesh.messaging import Subjects

log = logging.getLogger(__name__)


class BoardHints:
    def __init__(self, nc: NatsClient, subjects: Subjects, interval: float) -> None:
        self.nc = nc
        self.subjects = subjects
        self.interval = interval
        # quiz -> when its last hint went (monotonic), oldest first; and the quizzes
        # whose trailing hint is due.
        self._last: dict[str, float] = {}
        self._trailing: dict[str, asyncio.TimerHandle] = {}
        self._sending: set[asyncio.Task[None]] = set()

    def changed(self, quiz_id: str) -> None:
        """The quiz's board changed: hinted now, or once its interval is over."""
        if quiz_id in self._trailing:
            return  # the trailing hint will tell
        now = time.monotonic()
        last = self._last.get(quiz_id)
        if last is None or now - last >= self.interval:
            self._send(quiz_id, now)
        else:
            handle = asyncio.get_running_loop().call_later(
                last + self.interval - now, self._send_trailing, quiz_id
            )
            self._trailing[quiz_id] = handle

    def _send_trailing(self, quiz_id: str) -> None:
        del self._trailing[quiz_id]
        self._send(quiz_id, time.monotonic())

    def _send(self, quiz_id: str, now: float) -> None:
        # Kept in the order hints went, so quizzes quiet for an interval are forgotten
        # from the front: the map holds only the quizzes hinted in the last interval.
        self._last.pop(quiz_id, None)
        self._last[quiz_id] = now
        while True:  # ends at the latest at the hint just sent
            quiz, at = next(iter(self._last.items()))
            if now - at < self.interval:
                break
            del self._last[quiz]
        task = asyncio.get_running_loop().create_task(self._publish(quiz_id))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _publish(self, quiz_id: str) -> None:
        try:
            await self.nc.publish(self.subjects.board_changed(quiz_id), b"")
        except Exception as e:  # closed or reconnecting: the next change hints again
            log.warning("board hint not published", extra={"quiz_id": quiz_id, "error": repr(e)})

    async def stop(self) -> None:
        """Sends the trailing hints now (a stopping process's last answers)."""
        for quiz_id, handle in list(self._trailing.items()):
            handle.cancel()
            self._send_trailing(quiz_id)
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
