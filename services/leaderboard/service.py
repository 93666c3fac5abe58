"""LeaderboardService: ranked pages and a player's neighbourhood, read from Redis."""

from __future__ import annotations

import grpc
from quizmesh.leaderboard.v1 import leaderboard_pb2, leaderboard_pb2_grpc

from services.core import ids
from services.core.board import Board
from services.core.errors import InvalidArgument, NotFound
from services.core.paging import decode_token, encode_token, page_size

DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 1000
DEFAULT_NEIGHBOURS = 2
MAX_NEIGHBOURS = 10


class LeaderboardService(leaderboard_pb2_grpc.LeaderboardServiceServicer):
    def __init__(self, board: Board) -> None:
        self.board = board

    async def GetLeaderboard(
        self, request: leaderboard_pb2.GetLeaderboardRequest, context: grpc.aio.ServicerContext
    ) -> leaderboard_pb2.GetLeaderboardResponse:
        quiz_id = ids.quiz_code(request.quiz_id)
        size = page_size(request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        offset = decode_token(request.page_token)
        # The status doubles as the existence test: the quiz service writes it first.
        status = await self.board.status(quiz_id)
        if status is None:
            raise NotFound(f"quiz {quiz_id} not found")
        entries, total = await self.board.page(quiz_id, offset, size)
        end = offset + len(entries)
        return leaderboard_pb2.GetLeaderboardResponse(
            entries=entries,
            total_players=total,
            next_page_token=encode_token(end) if entries and end < total else "",
            is_final=status == "CLOSED",
        )

    async def GetPlayerRank(
        self, request: leaderboard_pb2.GetPlayerRankRequest, context: grpc.aio.ServicerContext
    ) -> leaderboard_pb2.GetPlayerRankResponse:
        quiz_id = ids.quiz_code(request.quiz_id)
        player_id = ids.player_ref(request.player_id)
        # proto3 cannot tell an explicit 0 from unset, so 0 means the default.
        neighbours = request.neighbours or DEFAULT_NEIGHBOURS
        if not 0 <= neighbours <= MAX_NEIGHBOURS:
            raise InvalidArgument(
                f"neighbours must be between 0 and {MAX_NEIGHBOURS}, got {request.neighbours}"
            )
        if not await self.board.exists(quiz_id):
            raise NotFound(f"quiz {quiz_id} not found")
        player, above, below, total = await self.board.around(quiz_id, player_id, neighbours)
        if player is None:
            raise NotFound(f"player {player_id} is not in quiz {quiz_id}")
        return leaderboard_pb2.GetPlayerRankResponse(
            player=player, above=above, below=below, total_players=total
        )
