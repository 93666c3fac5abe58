"""LeaderboardService: ranked pages and a player's neighbourhood, read from Redis
while a quiz is live and from SQL once its final board is there and Redis let it go."""

from __future__ import annotations

from typing import NamedTuple, Protocol

import grpc
from quizmesh.common.v1 import common_pb2
from quizmesh.leaderboard.v1 import leaderboard_pb2, leaderboard_pb2_grpc

from services import ids
from services.identity.tokens import TokenVerifier
from services.leaderboard.final_board import FinalBoard
from services.leaderboard.live_board import LiveBoard
from services.live.board import Board
from services.mesh.errors import NotFound, Unavailable
from services.mesh.paging import decode_token, encode_token
from services.recovery.live_state import LiveStateRecovery

DEFAULT_PAGE_SIZE = 10
DEFAULT_NEIGHBOURS = 2


class Ranking(Protocol):
    """Ranked reads over one store; `Board` (Redis) and `FinalBoard` (SQL) agree exactly."""

    async def page(
        self, quiz_id: str, offset: int, count: int
    ) -> tuple[list[common_pb2.LeaderboardEntry], int]: ...

    async def around(
        self, quiz_id: str, player_id: str, neighbours: int
    ) -> tuple[
        common_pb2.LeaderboardEntry | None,
        list[common_pb2.LeaderboardEntry],
        list[common_pb2.LeaderboardEntry],
        int,
    ]: ...


class QuizBoard(NamedTuple):
    """Where a quiz's leaderboard is read from, and whether it can still change."""

    ranking: Ranking
    is_final: bool


class LeaderboardService(leaderboard_pb2_grpc.LeaderboardServiceServicer):
    def __init__(
        self,
        board: Board,
        final_board: FinalBoard,
        recovery: LiveStateRecovery,
        verifier: TokenVerifier,
        live: LiveBoard,
    ) -> None:
        self.verifier = verifier
        self.board = board
        # The hot path: a live quiz's status and rows in one round trip.
        self.live = live
        self.final_board = final_board
        self.recovery = recovery

    async def GetLeaderboard(
        self, request: leaderboard_pb2.GetLeaderboardRequest, context: grpc.aio.ServicerContext
    ) -> leaderboard_pb2.GetLeaderboardResponse:
        quiz_id = ids.quiz_code(request.quiz_id)
        size = request.page_size or DEFAULT_PAGE_SIZE
        offset = decode_token(request.page_token)
        self.verifier.optional_caller(context)  # anyone may read; a token must be valid
        live = await self.live.page(quiz_id, offset, size)
        if live is not None:
            entries, total, is_final = live.entries, live.total, live.status == "CLOSED"
        else:
            board = await self._board_for(quiz_id)
            entries, total = await board.ranking.page(quiz_id, offset, size)
            is_final = board.is_final
        end = offset + len(entries)
        return leaderboard_pb2.GetLeaderboardResponse(
            entries=entries,
            total_players=total,
            next_page_token=encode_token(end) if entries and end < total else "",
            is_final=is_final,
        )

    async def GetPlayerRank(
        self, request: leaderboard_pb2.GetPlayerRankRequest, context: grpc.aio.ServicerContext
    ) -> leaderboard_pb2.GetPlayerRankResponse:
        quiz_id = ids.quiz_code(request.quiz_id)
        player_id = ids.player_ref(request.player_id)
        # proto3 cannot tell an explicit 0 from unset, so 0 means the default.
        neighbours = request.neighbours or DEFAULT_NEIGHBOURS
        self.verifier.optional_caller(context)
        live = await self.live.around(quiz_id, player_id, neighbours)
        if live is not None:
            player, above, below, total = live.player, live.above, live.below, live.total
        else:
            board = await self._board_for(quiz_id)
            player, above, below, total = await board.ranking.around(quiz_id, player_id, neighbours)
        if player is None:
            raise NotFound(f"player {player_id} is not in quiz {quiz_id}")
        return leaderboard_pb2.GetPlayerRankResponse(
            player=player, above=above, below=below, total_players=total
        )

    async def _board_for(self, quiz_id: str) -> QuizBoard:
        """For a quiz the live read did not find in Redis: Redis again once its lost
        live state is rebuilt from SQL plus the JetStream record (UNAVAILABLE until
        then), else its final board in SQL; NotFound for an unknown quiz."""
        if await self.recovery.ensure_live(quiz_id):  # the state is there (again)
            # The status doubles as the existence test: the quiz service writes it first.
            status = await self.board.status(quiz_id)
            if status is None:
                raise Unavailable(
                    f"the live leaderboard of quiz {quiz_id} is being restored; retry in a moment"
                )
            return QuizBoard(self.board, is_final=status == "CLOSED")
        return QuizBoard(self.final_board, is_final=True)
