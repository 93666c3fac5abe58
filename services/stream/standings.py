"""Every watching player's own rank and score, read once per snapshot.

Two commands per player in a pipeline were, at 300 watching players, 45% of the
stream process's CPU (the client packs, times out and parses each reply in
Python), more than sending the boards; one read now answers for all of them
(LiveBoard.places). Nicknames never change, so each is read once per hub.
"""

from __future__ import annotations

from quizmesh.common.v1 import common_pb2
from quizmesh.stream.v1 import stream_pb2

from services.live.board import LiveBoard


class Standings:
    """The standings of one quiz's watching players, as ready-to-send `you` bytes."""

    def __init__(self, board: LiveBoard, quiz_id: str) -> None:
        self.board = board
        self.quiz_id = quiz_id
        self._nicknames: dict[str, str] = {}
        # Player -> (rank, points) and its serialized `you`: most players keep their
        # place from one snapshot to the next, so their bytes are reused.
        self._sent: dict[str, tuple[tuple[int, int], bytes]] = {}

    async def yours(self, player_ids: list[str], board_size: int) -> dict[str, bytes]:
        """Each player's `you` message (b"" for a player not on the board)."""
        places = await self.board.places(self.quiz_id, player_ids, board_size)
        missing = [pid for pid in places if pid not in self._nicknames]
        if missing:
            names = await self.board.nicknames(self.quiz_id, missing)
            self._nicknames.update(zip(missing, names, strict=True))
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


def _you(player_id: str, nickname: str, rank: int, points: int) -> bytes:
    # Concatenated protobuf messages merge, so shared snapshot bytes + these bytes
    # parse as one WatchLeaderboardResponse carrying both.
    standing = common_pb2.PlayerStanding(
        player_id=player_id, nickname=nickname, rank=rank, score=points
    )
    return stream_pb2.WatchLeaderboardResponse(you=standing).SerializeToString()
