"""This process's copy of one quiz's board, kept level from the leaderboard
service's BoardUpdates (events.proto), so that watchers' own ranks are worked out
here instead of one Redis read per watcher per snapshot.

The copy is read once from Redis in pages (after the board's position: its
generation and the number of the last update), then follows the updates in
order. Updates may arrive out of order (several leaderboard replicas publish) and
core NATS may lose one: an update ahead of the next expected waits, and a gap
that stays longer than GAP_SECONDS, or a new generation (a rebuilt live state),
makes the copy read the board afresh. Until it is level, `places` answers None
and the caller asks Redis.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from quizmesh.common.v1 import events_pb2

from services.live.board import LiveBoard
from services.mesh.tasks import cancel_and_wait
from services.stream.local_board import LocalBoard

log = logging.getLogger(__name__)

# Entries per read while the copy is made: each read a short script for Redis.
READ_PAGE = 20_000
# How long an update ahead of a missing one waits for it before the copy is read afresh.
GAP_SECONDS = 1.0
# Updates kept while the copy is read; beyond that it is read afresh once more.
MOST_WAITING = 1_000


class BoardCopy:
    def __init__(self, board: LiveBoard, quiz_id: str) -> None:
        self.board = board
        self.quiz_id = quiz_id
        self.local = LocalBoard()
        self.generation: int | None = None
        self.sequence = 0
        # Whether the copy is the board as of the last update applied (its snapshot's).
        self.level = False
        # The first update taken after the last read ended: rows read before it may
        # be newer than the updates before it, so the copy is level only from it on.
        self._level_from = 0
        self._waiting: dict[int, events_pb2.BoardUpdate] = {}
        self._reading: asyncio.Task[None] | None = None
        self._gap: asyncio.TimerHandle | None = None
        self.reads = 0  # how often the board was read whole (for tests and metrics)
        self.broken = False

    def start(self) -> None:
        """Reads the board in the background (again, if a read is under way)."""
        self.level = False
        self.generation = None
        # Every update received so far was taken before this read begins: the read
        # holds what they changed.
        self._waiting = {}
        if self._reading is not None:
            self._reading.cancel()
        self._reading = asyncio.create_task(self._read(), name=f"board-copy-{self.quiz_id}")

    async def close(self) -> None:
        if self._gap is not None:
            self._gap.cancel()
        if self._reading is not None:
            await cancel_and_wait([self._reading], 5.0)

    def places(self, player_ids: Sequence[str]) -> dict[str, tuple[int, int]] | None:
        """Player -> (rank, points) of those on the board; None until the copy is level."""
        if not self.level:
            return None
        return self.local.places(player_ids)

    def on_update(self, update: events_pb2.BoardUpdate) -> None:
        if self.broken:
            return
        if self.generation is None:  # being read: kept for after the read
            if self._reading is None:  # the last read failed: once more
                self.start()
            if len(self._waiting) < MOST_WAITING:
                self._waiting[update.sequence] = update
            return
        if update.generation != self.generation:
            if update.generation > self.generation:
                log.info("board rebuilt; reading it afresh", extra={"quiz_id": self.quiz_id})
                self.start()
            return
        if update.sequence <= self.sequence:
            return  # taken into the read, or a duplicate
        self._waiting[update.sequence] = update
        self._catch_up()

    def _catch_up(self) -> None:
        while (update := self._waiting.pop(self.sequence + 1, None)) is not None:
            changes: list[tuple[str, float | None]] = list(
                zip(update.player_ids, update.packed_scores, strict=True)
            )
            changes += [(pid, None) for pid in update.removed]
            try:
                self.local.apply(changes)
            except ValueError as e:
                # Not a board this copy can hold (an id it cannot encode): for this
                # hub's life Redis answers, rather than a read of the board per update.
                log.error("board copy given up", extra={"quiz_id": self.quiz_id, "error": repr(e)})
                self.broken, self.level = True, False
                return
            self.sequence = update.sequence
            self.level = update.complete and update.sequence >= self._level_from
        self._waiting = {s: u for s, u in self._waiting.items() if s > self.sequence}
        if self._gap is not None:
            self._gap.cancel()
            self._gap = None
        if self._waiting:  # something is missing: it may yet come, out of order
            self.level = False
            self._gap = asyncio.get_running_loop().call_later(GAP_SECONDS, self._gap_stayed)

    def _gap_stayed(self) -> None:
        self._gap = None
        log.warning(
            "board update lost; reading the board afresh",
            extra={"quiz_id": self.quiz_id, "after": self.sequence},
        )
        self.start()

    async def _read(self) -> None:
        try:
            position = await self.board.board_position(self.quiz_id)
            if position is None:  # not live: nothing to copy (yet); the next update retries
                self._reading = None
                return
            entries: list[tuple[str, float]] = []
            after: tuple[float, str] | None = None
            while True:
                rows = await self.board.rows_after(self.quiz_id, after, READ_PAGE)
                if rows is None:
                    self._reading = None
                    return
                entries += rows
                if len(rows) < READ_PAGE:
                    break
                after = (rows[-1][1], rows[-1][0])
            end = await self.board.board_position(self.quiz_id)
        except Exception as e:
            self._reading = None  # the next update tries again
            log.warning("board not copied", extra={"quiz_id": self.quiz_id, "error": repr(e)})
            return
        self._reading = None  # done: what follows may start another read
        if end is None or end[0] != position[0]:
            self.start()  # rebuilt meanwhile
            return
        self.reads += 1
        try:
            self.local.reset(entries)
        except ValueError as e:
            log.error("board copy given up", extra={"quiz_id": self.quiz_id, "error": repr(e)})
            self.broken = True
            return
        # Whatever changed during the read comes in updates after its position.
        self.generation, self.sequence = position
        self._level_from = end[1] + 1
        self.level = False
        waiting = self._waiting
        self._waiting = {}
        for update in sorted(waiting.values(), key=lambda u: u.sequence):
            self.on_update(update)
