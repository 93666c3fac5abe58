"""Every watching player's own rank and score, read once per snapshot.

Board.standings asks two commands per player in a pipeline: at 300 watching players
that was 45% of the stream process's CPU (redis-py packs, times out and parses each
reply in Python), more than sending the boards. Here one command answers for all:
the whole board when the watchers are a good part of it, else a script that ranks
just them. Nicknames never change, so each is read once per hub.
"""

from __future__ import annotations

from typing import Any

from quizmesh.common.v1 import common_pb2
from quizmesh.stream.v1 import stream_pb2
from redis.asyncio import Redis

from services.live.board import QuizKeys, points_of

# Reading the whole board costs O(board); ranking each watcher O(log board) in Redis.
WHOLE_BOARD_SHARE = 4

RANK_EACH = """
local out = {}
for i, member in ipairs(ARGV) do
  local rank = redis.call('ZREVRANK', KEYS[1], member)
  if rank then
    out[#out + 1] = rank
    out[#out + 1] = redis.call('ZSCORE', KEYS[1], member)
  else
    out[#out + 1] = -1
    out[#out + 1] = false
  end
end
return out
"""


class Standings:
    """The standings of one quiz's watching players, as ready-to-send `you` bytes."""

    def __init__(self, redis: Redis, keys: QuizKeys) -> None:
        self.redis = redis
        self.keys = keys
        self._rank_each = redis.register_script(RANK_EACH)
        self._nicknames: dict[str, str] = {}
        # Player -> (rank, points) and its serialized `you`: most players keep their
        # place from one snapshot to the next, so their bytes are reused.
        self._sent: dict[str, tuple[tuple[int, int], bytes]] = {}

    async def yours(self, player_ids: list[str], board_size: int) -> dict[str, bytes]:
        """Each player's `you` message (b"" for a player not on the board)."""
        places = await self._places(player_ids, board_size)
        missing = [pid for pid in places if pid not in self._nicknames]
        if missing:
            names: list[Any] = await self.redis.hmget(self.keys.nicknames, missing)
            self._nicknames.update(zip(missing, (name or "" for name in names), strict=True))
        result: dict[str, bytes] = {}
        for pid in player_ids:
            place = places.get(pid)
            if place is None:
                result[pid] = b""
                continue
            sent = self._sent.get(pid)
            if sent is None or sent[0] != place:
                sent = (place, _you(pid, self._nicknames[pid], *place))
                self._sent[pid] = sent
            result[pid] = sent[1]
        return result

    def forget(self, player_id: str) -> None:
        self._sent.pop(player_id, None)

    async def _places(self, player_ids: list[str], board_size: int) -> dict[str, tuple[int, int]]:
        """Player -> (rank, points) of those on the board."""
        if not player_ids:
            return {}
        if len(player_ids) * WHOLE_BOARD_SHARE >= board_size:
            rows: list[Any] = await self.redis.zrevrange(self.keys.board, 0, -1, withscores=True)
            wanted = set(player_ids)
            return {
                pid: (i + 1, points_of(score))
                for i, (pid, score) in enumerate(rows)
                if pid in wanted
            }
        flat = await self._rank_each(keys=[self.keys.board], args=player_ids)
        return {
            pid: (int(rank) + 1, points_of(float(score)))
            for pid, rank, score in zip(player_ids, flat[::2], flat[1::2], strict=True)
            if int(rank) >= 0 and score is not None
        }


def _you(player_id: str, nickname: str, rank: int, points: int) -> bytes:
    # Concatenated protobuf messages merge, so shared snapshot bytes + these bytes
    # parse as one WatchLeaderboardResponse carrying both.
    standing = common_pb2.PlayerStanding(
        player_id=player_id, nickname=nickname, rank=rank, score=points
    )
    return stream_pb2.WatchLeaderboardResponse(you=standing).SerializeToString()
