"""Every watching player's own rank and score, worked out once per snapshot.

From this process's copy of the board (board_copy.py) once it is level: nothing
per watcher in Redis. Until then (the copy being read, an update lost) from Redis,
one read for all of them (LiveBoard.places), but only for up to REDIS_MOST players:
a stadium's watchers keep the standing they had for the second or so until the copy
is level again, rather than every process asking Redis for 10,000 ranks at once.
Nicknames never change, so each is read once per hub.
"""

from __future__ import annotations

from services.live.board import LiveBoard
from services.stream.board_copy import BoardCopy
from services.stream.frames import Standing, StandingHead

# The most players ranked through Redis at once while the copy is not level.
REDIS_MOST = 1_000


class Standings:
    """The standings of one quiz's watching players, as ready-to-send `you`s."""

    def __init__(
        self,
        board: LiveBoard,
        copy: BoardCopy,
        quiz_id: str,
        counts: dict[str, int] | None = None,
    ) -> None:
        self.board = board
        self.copy = copy
        self.quiz_id = quiz_id
        # Ranks worked out by source ("copy" or "redis"), for the metrics.
        self.counts = counts if counts is not None else {"copy": 0, "redis": 0}
        self._heads: dict[str, StandingHead] = {}
        # Player -> (rank, points) and its `you`: most players keep their place from
        # one snapshot to the next, so their bytes are reused.
        self._sent: dict[str, tuple[tuple[int, int], Standing]] = {}

    async def yours(self, player_ids: list[str], board_size: int) -> dict[str, Standing | None]:
        """Each player's `you` (None for one not on the board). Players left out (the
        copy not level, too many for Redis) get the board without `you` this time and
        keep their last one."""
        places = self.copy.places(player_ids)
        if places is None:
            if len(player_ids) > REDIS_MOST:
                return {}  # no `you` this time: each watcher keeps its last one
            places = await self.board.places(self.quiz_id, player_ids, board_size)
            self.counts["redis"] += len(player_ids)
        else:
            self.counts["copy"] += len(player_ids)
        missing = [pid for pid in places if pid not in self._heads]
        if missing:
            names = await self.board.nicknames(self.quiz_id, missing)
            for pid, name in zip(missing, names, strict=True):
                self._heads[pid] = StandingHead(pid, name)
        result: dict[str, Standing | None] = {}
        for pid in player_ids:
            place = places.get(pid)
            if place is None:
                result[pid] = None
                continue
            sent = self._sent.get(pid)
            if sent is None or sent[0] != place:
                sent = (place, Standing(*place, self._heads[pid]))
                self._sent[pid] = sent
            result[pid] = sent[1]
        return result

    def forget(self, player_id: str) -> None:
        self._sent.pop(player_id, None)
