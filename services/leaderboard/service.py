"""LeaderboardService: ranked pages and a player's neighbourhood, read from Redis
while a quiz is live and from SQL once its final board is there and Redis let it go."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from quizmesh.leaderboard.v1 import leaderboard_pb2, leaderboard_pb2_grpc

from services import ids
from services.database.records import QuizState
from services.identity.tokens import TokenVerifier
from services.leaderboard.final_board import FinalBoard
from services.live.board import LiveBoard, LiveNeighbourhood, LivePage
from services.live.errors import restoring
from services.mesh.context import Context
from services.mesh.errors import NotFound, Reason
from services.mesh.paging import decode_cursor, encode_cursor
from services.recovery.live_state import LiveStateRecovery

DEFAULT_PAGE_SIZE = 10

Read = TypeVar("Read", LivePage, LiveNeighbourhood)


@dataclass
class LeaderboardService(leaderboard_pb2_grpc.LeaderboardServiceServicer):
    live: LiveBoard
    final_board: FinalBoard
    recovery: LiveStateRecovery
    verifier: TokenVerifier

    async def GetLeaderboard(
        self, request: leaderboard_pb2.GetLeaderboardRequest, context: Context
    ) -> leaderboard_pb2.GetLeaderboardResponse:
        quiz_id = ids.quiz_code(request.quiz_id)
        size = request.page_size or DEFAULT_PAGE_SIZE
        after = decode_cursor(request.page_token)
        self.verifier.optional_caller(context)  # anyone may read; a token must be valid
        page = await self._read(
            quiz_id,
            lambda: self.live.page(quiz_id, after, size),
            lambda: self.final_board.page(quiz_id, after, size),
        )
        more = page.last is not None and page.entries[-1].rank < page.total
        return leaderboard_pb2.GetLeaderboardResponse(
            entries=page.entries,
            total_players=page.total,
            next_page_token=encode_cursor(page.last) if more and page.last else "",
            is_final=page.status is QuizState.CLOSED,
        )

    async def GetPlayerRank(
        self, request: leaderboard_pb2.GetPlayerRankRequest, context: Context
    ) -> leaderboard_pb2.GetPlayerRankResponse:
        quiz_id = ids.quiz_code(request.quiz_id)
        player_id = ids.player_ref(request.player_id)
        # proto3 cannot tell an explicit 0 from unset, so 0 means the default.
        neighbours = request.neighbours
        self.verifier.optional_caller(context)
        place = await self._read(
            quiz_id,
            lambda: self.live.around(quiz_id, player_id, neighbours),
            lambda: self.final_board.around(quiz_id, player_id, neighbours),
        )
        if place.player is None:
            raise NotFound(
                f"player {player_id} is not in quiz {quiz_id}", Reason.ERROR_REASON_PLAYER_NOT_FOUND
            )
        return leaderboard_pb2.GetPlayerRankResponse(
            player=place.player, above=place.above, below=place.below, total_players=place.total
        )

    async def _read(
        self,
        quiz_id: str,
        live: Callable[[], Awaitable[Read | None]],
        final: Callable[[], Awaitable[Read]],
    ) -> Read:
        """The live read; for a quiz Redis does not hold, the same read again once its
        lost live state is rebuilt from SQL plus the JetStream record (UNAVAILABLE
        until then), else from its final board in SQL; NotFound for an unknown quiz."""
        found = await live()
        if found is not None:
            return found
        if not await self.recovery.ensure_live(quiz_id):
            return await final()
        found = await live()  # it came back between the two reads
        if found is None:
            raise restoring(quiz_id)
        return found
