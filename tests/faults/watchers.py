"""WatchLeaderboard and WatchQuiz spectators that reconnect through faults."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import grpc
from quizmesh.common.v1 import common_pb2, events_pb2
from quizmesh.stream.v1 import stream_pb2

from tests.stack import Stack


class LeaderboardWatcher:
    """A spectator's WatchLeaderboard that reconnects when its stream breaks, as a
    browser's EventSource does, and keeps the latest snapshot."""

    def __init__(self, stack: Stack, quiz_id: str) -> None:
        self.stack = stack
        self.quiz_id = quiz_id
        self.latest: common_pb2.LeaderboardSnapshot | None = None
        self.snapshots = 0
        self.breaks: list[str] = []
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            call = self.stack.stream.WatchLeaderboard(
                stream_pb2.WatchLeaderboardRequest(quiz_id=self.quiz_id)
            )
            try:
                async for reply in call:
                    if reply.HasField("snapshot"):
                        self.latest = reply.snapshot
                        self.snapshots += 1
                        self._changed.set()
                self.breaks.append("stream ended")
            except grpc.aio.AioRpcError as e:
                self.breaks.append(f"{e.code().name}: {e.details()}")
            finally:
                call.cancel()
            await asyncio.sleep(0.2)

    async def until(
        self, wanted: Callable[[common_pb2.LeaderboardSnapshot], bool], within: float
    ) -> common_pb2.LeaderboardSnapshot:
        try:
            async with asyncio.timeout(within):
                while True:
                    self._changed.clear()
                    if self.latest is not None and wanted(self.latest):
                        return self.latest
                    await self._changed.wait()
        except TimeoutError:
            latest = self.latest
            seen = (
                "nothing"
                if latest is None
                else f"version {latest.version}, final={latest.is_final}, top "
                f"{[(e.rank, e.player_id, e.score) for e in latest.entries[:3]]}"
            )
            raise AssertionError(
                f"no wanted snapshot within {within:g} s; the latest of {self.snapshots}: "
                f"{seen}; stream breaks: {self.breaks}"
            ) from None

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class QuizWatcher:
    """A WatchQuiz that resumes after the last sequence it saw when its stream
    breaks, and keeps the lifecycle events (sequence, kind, question index)."""

    def __init__(self, stack: Stack, quiz_id: str) -> None:
        self.stack = stack
        self.quiz_id = quiz_id
        self.events: list[tuple[int, str, int]] = []
        self.breaks: list[str] = []
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    @property
    def last_sequence(self) -> int:
        return self.events[-1][0] if self.events else 0

    async def _run(self) -> None:
        while True:
            call = self.stack.stream.WatchQuiz(
                stream_pb2.WatchQuizRequest(quiz_id=self.quiz_id, after_sequence=self.last_sequence)
            )
            try:
                async for reply in call:
                    if not reply.heartbeat:
                        self._record(reply.event)
                self.breaks.append("stream ended")
            except grpc.aio.AioRpcError as e:
                self.breaks.append(f"{e.code().name}: {e.details()}")
            finally:
                call.cancel()
            await asyncio.sleep(0.2)

    def _record(self, event: events_pb2.QuizEvent) -> None:
        kind = event.WhichOneof("kind") or ""
        if kind == "leaderboard_changed":
            return
        index = -1
        if kind == "question_opened":
            index = event.question_opened.question.index
        elif kind == "question_closed":
            index = event.question_closed.index
        self.events.append((event.sequence, kind, index))
        self._changed.set()

    def lifecycle(self) -> list[tuple[str, int]]:
        return [(kind, index) for _, kind, index in self.events]

    async def until(self, kind: str, index: int = -1, within: float = 15.0) -> None:
        try:
            async with asyncio.timeout(within):
                while (kind, index) not in self.lifecycle():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"no {kind} event within {within:g} s; got {self.lifecycle()}, "
                f"stream breaks: {self.breaks}"
            ) from None

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def expected_lifecycle(questions: int) -> list[tuple[str, int]]:
    """The lifecycle events of a quiz played through and closed by its host."""
    events = [("quiz_started", -1)]
    for q in range(questions):
        events.append(("question_opened", q))
        events.append(("question_closed", q))
    return [*events, ("quiz_closed", -1)]
