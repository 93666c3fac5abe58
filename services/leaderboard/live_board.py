"""Ranked reads of a live quiz, each in ONE Redis round trip.

The same answers as `services.live.board.Board.page/around` plus the quiz's status
(the existence test and `is_final`), which took three round trips one after the
other: the status, the ranked rows, then the nicknames of those rows. Each round
trip costs the service far more CPU than the work Redis does for it (a socket write
and read, the pool, the reply parsing), so one script reads all of it. The reads
are O(log N + page size) whatever the size of the quiz, and run atomically: the
status, rows, names and total come from one moment of the board.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from quizmesh.common.v1 import common_pb2

from services.live.board import QuizKeys, points_of
from services.live.pipeline import PipelinedRedis, Script

# KEYS: state, board, nicknames. ARGV: first and last index (0-based, inclusive).
# Returns nil when the quiz has no live state, else {status, total, rows, names}.
PAGE = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return false end
local rows = redis.call('ZREVRANGE', KEYS[2], ARGV[1], ARGV[2], 'WITHSCORES')
local names = {}
if #rows > 0 then
  local ids = {}
  for i = 1, #rows, 2 do ids[#ids + 1] = rows[i] end
  names = redis.call('HMGET', KEYS[3], unpack(ids))
end
return {status, redis.call('ZCARD', KEYS[2]), rows, names}
"""

# KEYS: state, board, nicknames. ARGV: player id, neighbours on each side.
# Returns nil when the quiz has no live state, {status, total} when the player is not
# on the board, else {status, total, player's index, first index, rows, names}.
AROUND = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return false end
local total = redis.call('ZCARD', KEYS[2])
local index = redis.call('ZREVRANK', KEYS[2], ARGV[1])
if not index then return {status, total} end
local first = math.max(0, index - tonumber(ARGV[2]))
local rows = redis.call('ZREVRANGE', KEYS[2], first, index + tonumber(ARGV[2]), 'WITHSCORES')
local ids = {}
for i = 1, #rows, 2 do ids[#ids + 1] = rows[i] end
return {status, total, index, first, rows, redis.call('HMGET', KEYS[3], unpack(ids))}
"""


@dataclass(frozen=True, slots=True)
class LivePage:
    status: str
    entries: list[common_pb2.LeaderboardEntry]
    total: int


@dataclass(frozen=True, slots=True)
class LiveNeighbourhood:
    status: str
    player: common_pb2.LeaderboardEntry | None
    above: list[common_pb2.LeaderboardEntry]
    below: list[common_pb2.LeaderboardEntry]
    total: int


class LiveBoard:
    """The reads, over the pipelined connection the score service's answers use too
    (services/live/pipeline.py): a redis-py call costs ~130 µs of CPU, this ~55, and
    concurrent page loads share writes."""

    def __init__(self, pipe: PipelinedRedis, prefix: str) -> None:
        self.prefix = prefix
        self._page = Script(pipe, PAGE)
        self._around = Script(pipe, AROUND)

    def _keys(self, quiz_id: str) -> list[str]:
        keys = QuizKeys(self.prefix, quiz_id)
        return [keys.state, keys.board, keys.nicknames]

    async def page(self, quiz_id: str, offset: int, count: int) -> LivePage | None:
        """Entries ranked offset+1 .. offset+count; None when the quiz is not live."""
        reply = await self._page(self._keys(quiz_id), [offset, offset + count - 1])
        if reply is None:
            return None
        status, total, rows, names = reply
        return LivePage(str(status), _entries(rows, names, first_rank=offset + 1), int(total))

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
            return LiveNeighbourhood(str(status), None, [], [], int(total))
        status, total, index, first, rows, names = reply
        entries = _entries(rows, names, first_rank=int(first) + 1)
        mine = int(index) - int(first)
        return LiveNeighbourhood(
            str(status), entries[mine], entries[:mine], entries[mine + 1 :], int(total)
        )


def _entries(
    rows: list[Any], names: list[Any], first_rank: int
) -> list[common_pb2.LeaderboardEntry]:
    """Entries from flat ZREVRANGE ... WITHSCORES rows (id, score, id, score, ...) and
    the nicknames of those ids (a missing one is "", as in `Board`)."""
    return [
        common_pb2.LeaderboardEntry(
            rank=first_rank + i,
            player_id=rows[2 * i],
            nickname=name or "",
            score=points_of(float(rows[2 * i + 1])),
        )
        for i, name in enumerate(names)
    ]
