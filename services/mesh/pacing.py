"""Writes paced to at most one per `gap` seconds, so that under load a write carries
what arrived meanwhile (the score service's writes to Redis and to JetStream: what a
shared server spends per answer falls with each answer sharing its write,
benchmarks/answer_cost.py). A write due after a quiet spell goes at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class Pacing:
    __slots__ = ("_last", "gap")

    def __init__(self, gap: float = 0.0) -> None:
        self.gap = gap
        self._last = 0.0

    def schedule(
        self, loop: asyncio.AbstractEventLoop, write: Callable[[], None]
    ) -> asyncio.Handle:
        """`write` on the next loop turn, but not sooner than `gap` after the last one."""
        wait = self._last + self.gap - time.monotonic()
        return loop.call_later(wait, write) if wait > 0 else loop.call_soon(write)

    def wrote(self) -> None:
        if self.gap > 0:
            self._last = time.monotonic()
