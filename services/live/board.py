"""Ranked reads of a live quiz, each ONE Redis round trip over the pipelined client.

Each round trip costs a service far more CPU than the work Redis does for it (a
socket write and read, the reply parsing), so each read is one script that returns
the quiz's status with the rows and their nicknames. The reads are
O(log N + page size) whatever the size of the quiz, and atomic: status, rows,
names and total come from one moment of the board. The same answers, for a quiz
whose final board is in SQL, come from services/leaderboard/final_board.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from quizmesh.common.v1 import common_pb2, events_pb2

from services.database.records import QuizState
from services.live.keys import QuizKeys
from services.live.layout import Field, pack, points_of, reached_of
from services.live.pipeline import PipelinedRedis, Script
from services.live.scripts import composed, source
from services.mesh.paging import Cursor

# Ranking each player costs O(log board) in Redis, reading the whole board O(board):
# for a good share of the board, the whole board is cheaper.
WHOLE_BOARD_SHARE = 4


@dataclass(frozen=True, slots=True)
class LivePage:
    status: QuizState
    entries: list[common_pb2.LeaderboardEntry]
    total: int
    # The last entry's ranking key, where the next page starts; None on an empty page.
    last: Cursor | None


@dataclass(frozen=True, slots=True)
class LiveNeighbourhood:
    status: QuizState
    player: common_pb2.LeaderboardEntry | None
    above: list[common_pb2.LeaderboardEntry]
    below: list[common_pb2.LeaderboardEntry]
    total: int


class LiveBoard:
    """Reads over the pipelined connection (services/live/pipeline.py): a redis-py
    call costs ~130 µs of CPU, this ~55, and concurrent reads share writes."""

    def __init__(self, pipe: PipelinedRedis, prefix: str) -> None:
        self.pipe = pipe
        self.prefix = prefix
        self._page = Script(pipe, source("page"))
        self._around = Script(pipe, source("around"))
        self._snapshot = Script(pipe, source("snapshot"))
        self._rank_each = Script(pipe, source("rank_each"))
        self._take_update = Script(pipe, composed("take_update", "snapshot"))

    def keys(self, quiz_id: str) -> QuizKeys:
        return QuizKeys(self.prefix, quiz_id)

    def _keys(self, quiz_id: str) -> list[str]:
        keys = self.keys(quiz_id)
        return [keys.state, keys.board, keys.nicknames]

    async def page(self, quiz_id: str, after: Cursor | None, count: int) -> LivePage | None:
        """Up to `count` entries ranked right after the cursor's (from the top
        without one); None when the quiz is not live."""
        args: list[str | int] = [count, 1]
        if after is not None:
            args += [int(pack(after.score, after.reached_ms)), after.player_id]
        reply = await self._page(self._keys(quiz_id), args)
        if reply is None:
            return None
        status, total, rows, names, first = reply
        last = None
        if rows:
            packed = float(rows[-1])
            last = Cursor(points_of(packed), reached_of(packed), str(rows[-2]))
        found = entries(rows, names, first_rank=int(first) + 1)
        return LivePage(QuizState(status), found, int(total), last)

    async def around(
        self, quiz_id: str, player_id: str, neighbours: int
    ) -> LiveNeighbourhood | None:
        """The player's entry with up to `neighbours` players above and below; None
        when the quiz is not live (a player not on the board has no entry)."""
        reply = await self._around(self._keys(quiz_id), [player_id, neighbours])
        if reply is None:
            return None
        if len(reply) == 2:
            status, total = reply
            return LiveNeighbourhood(QuizState(status), None, [], [], int(total))
        status, total, index, first, rows, names = reply
        found = entries(rows, names, first_rank=int(first) + 1)
        mine = int(index) - int(first)
        return LiveNeighbourhood(
            QuizState(status), found[mine], found[:mine], found[mine + 1 :], int(total)
        )

    async def snapshot(self, quiz_id: str, top: int) -> common_pb2.LeaderboardSnapshot | None:
        """The top of the board with its version; None when the quiz is not live."""
        reply = await self._snapshot(self._keys(quiz_id), [top])
        return None if reply is None else self._snapshot_of(quiz_id, reply)

    @staticmethod
    def _snapshot_of(quiz_id: str, reply: list[Any]) -> common_pb2.LeaderboardSnapshot:
        status, version, question, changed_at, answers, total, rows, names = reply
        q = int(question) if question is not None else -1
        snapshot = common_pb2.LeaderboardSnapshot(
            quiz_id=quiz_id,
            version=int(version or 0),
            entries=entries(rows, names, first_rank=1),
            total_players=int(total),
            question_index=q,
            question_answers=int(answers or 0),
            is_final=status == QuizState.CLOSED,
        )
        if changed_at:
            snapshot.changed_at.FromMilliseconds(int(changed_at))
        return snapshot

    async def places(
        self, quiz_id: str, player_ids: Sequence[str], board_size: int
    ) -> dict[str, tuple[int, int]]:
        """Player -> (rank, points) of those of `player_ids` on the board, in one round
        trip: the whole board when they are a good part of it, else ranked one by one."""
        if not player_ids:
            return {}
        board = self.keys(quiz_id).board
        if len(player_ids) * WHOLE_BOARD_SHARE >= board_size:
            rows: list[Any] = await self.pipe.call("ZREVRANGE", board, 0, -1, "WITHSCORES")
            wanted = set(player_ids)
            return {
                rows[i]: (i // 2 + 1, points_of(float(rows[i + 1])))
                for i in range(0, len(rows), 2)
                if rows[i] in wanted
            }
        flat = await self._rank_each([board], player_ids)
        return {
            pid: (int(rank) + 1, points_of(float(score)))
            for pid, rank, score in zip(player_ids, flat[::2], flat[1::2], strict=True)
            if int(rank) >= 0 and score is not None
        }

    async def rows_after(
        self, quiz_id: str, after: tuple[float, str] | None, count: int
    ) -> list[tuple[str, float]] | None:
        """Up to `count` (player id, packed score) ranked right after `after` (a
        packed score and id; from the top without one), however the board moved
        meanwhile; None when the quiz is not live. A copy of the board reads it so."""
        args: list[str | int] = [count, 0]
        if after is not None:
            args += [int(after[0]), after[1]]
        reply = await self._page(self._keys(quiz_id), args)
        if reply is None:
            return None
        rows = reply[2]
        return [(str(rows[i]), float(rows[i + 1])) for i in range(0, len(rows), 2)]

    async def board_position(self, quiz_id: str) -> tuple[int, int] | None:
        """(generation, sequence of the last update taken) of the board; None when
        the quiz is not live. A copy read after this misses no later update."""
        state = self.keys(quiz_id).state
        found: list[Any] = await self.pipe.call(
            "HMGET", state, Field.STATUS, Field.BOARD_GENERATION, Field.BOARD_SEQUENCE
        )
        status, generation, sequence = found
        if status is None:
            return None
        return int(generation or 0), int(sequence or 0)

    async def take_update(
        self, quiz_id: str, top: int, most_changes: int
    ) -> events_pb2.BoardUpdate | None:
        """The board's changes since the last update (at most `most_changes`), with
        the snapshot once none are left; None when the quiz is not live."""
        keys = self.keys(quiz_id)
        reply = await self._take_update([*self._keys(quiz_id), keys.changed], [top, most_changes])
        if reply is None:
            return None
        generation, sequence, ids, scores, complete, snapshot = reply
        update = events_pb2.BoardUpdate(
            generation=int(generation), sequence=int(sequence), complete=complete == 1
        )
        for pid, score in zip(ids, scores, strict=True):
            if score is None:
                update.removed.append(str(pid))
            else:
                update.player_ids.append(str(pid))
                update.packed_scores.append(float(score))
        if snapshot is not None:
            update.snapshot.CopyFrom(self._snapshot_of(quiz_id, snapshot))
        return update

    async def nicknames(self, quiz_id: str, player_ids: Sequence[str]) -> list[str]:
        """Each player's nickname ("" for one without)."""
        names: list[Any] = await self.pipe.call("HMGET", self.keys(quiz_id).nicknames, *player_ids)
        return [name or "" for name in names]


def entries(
    rows: list[Any], names: list[Any], first_rank: int
) -> list[common_pb2.LeaderboardEntry]:
    """Ranked entries from ZREVRANGE ... WITHSCORES rows (player id, packed score)."""
    return [
        common_pb2.LeaderboardEntry(
            rank=first_rank + i,
            player_id=rows[2 * i],
            nickname=name or "",
            score=points_of(float(rows[2 * i + 1])),
        )
        for i, name in enumerate(names)
    ]
