"""The final leaderboard of a closed quiz, read from SQL once its Redis keys expired.

The sync job writes one `scores` row per player (a player who never scored has 0
points, reached when they joined) before it sets `quizzes.board_final`; from then
on the board never changes. Reads walk `ix_scores_ranking` (quiz_id, score DESC,
reached_ms, player_id DESC), which is the Redis order: Redis counts reached time
from the quiz's creation and SQL from the epoch, one offset per quiz, so both sort
the same. Exact ties fall to the greater player id first, as ZREVRANGE does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from quizmesh.common.v1 import common_pb2
from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.database.records import QuizState
from services.database.tables import BOARD_ORDER, players, quizzes, scores
from services.live.board import LiveNeighbourhood, LivePage
from services.mesh.paging import Cursor

# Board order, and the same index walked backwards (to reach the players just ahead).
_ORDER = BOARD_ORDER
_REVERSED = (scores.c.score.asc(), scores.c.reached_ms.desc(), scores.c.player_id.asc())


class FinalBoard:
    """Same answers as `services.live.board.LiveBoard.page/around`, from the system of
    record (the status of such a quiz is always CLOSED)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def page(self, quiz_id: str, after: Cursor | None, count: int) -> LivePage:
        """Up to `count` entries ranked right after the cursor's: a keyset read on the
        ranking index. The cursor counts reached time from the quiz's creation, as
        the live board does, so a client paging while the board turns final goes on
        where it was."""
        async with self.engine.connect() as db:
            created = int(
                await db.scalar(select(quizzes.c.created_ms).where(quizzes.c.id == quiz_id)) or 0
            )
            query = _entries(quiz_id).order_by(*_ORDER).limit(count)
            if after is not None:
                query = query.where(
                    _behind(after.score, after.reached_ms + created, after.player_id)
                )
            rows = (await db.execute(query)).all()
            first_rank = 1
            if rows and after is not None:
                first = rows[0]
                ahead = await db.scalar(
                    select(func.count())
                    .select_from(scores)
                    .where(
                        scores.c.quiz_id == quiz_id,
                        _ahead_of(first.score, first.reached_ms, first.player_id),
                    )
                )
                first_rank = int(ahead or 0) + 1
            last = None
            if rows:
                end = rows[-1]
                last = Cursor(end.score, end.reached_ms - created, end.player_id)
            total = await _total(db, quiz_id)
            return LivePage(QuizState.CLOSED, _ranked(rows, first_rank), total, last)

    async def around(self, quiz_id: str, player_id: str, neighbours: int) -> LiveNeighbourhood:
        """The player's entry with up to `neighbours` players above and below."""
        async with self.engine.connect() as db:
            total = await _total(db, quiz_id)
            mine = (
                await db.execute(_entries(quiz_id).where(scores.c.player_id == player_id))
            ).first()
            if mine is None:
                return LiveNeighbourhood(QuizState.CLOSED, None, [], [], total)
            score, reached, pid = mine.score, mine.reached_ms, mine.player_id
            # Rank = 1 + the players strictly ahead, counted on the ranking index.
            ahead = await db.scalar(
                select(func.count())
                .select_from(scores)
                .where(scores.c.quiz_id == quiz_id, _ahead_of(score, reached, pid))
            )
            rank = int(ahead or 0) + 1
            above_rows: list[Any] = []
            below_rows: list[Any] = []
            if neighbours:
                # Keyset reads from the player's place: O(neighbours), not O(rank).
                nearest = _entries(quiz_id).limit(neighbours)
                above = nearest.where(_ahead_of(score, reached, pid)).order_by(*_REVERSED)
                above_rows = list(reversed((await db.execute(above)).all()))
                below = nearest.where(_behind(score, reached, pid)).order_by(*_ORDER)
                below_rows = (await db.execute(below)).all()
        return LiveNeighbourhood(
            QuizState.CLOSED,
            _ranked([mine], first_rank=rank)[0],
            _ranked(above_rows, first_rank=rank - len(above_rows)),
            _ranked(below_rows, first_rank=rank + 1),
            total,
        )


def _entries(quiz_id: str) -> Select[Any]:
    # Outer join: a score without a player row still ranks (nickname ""), as in
    # Redis, where a missing nickname never hides a player from the board.
    return (
        select(
            scores.c.player_id,
            scores.c.score,
            scores.c.reached_ms,
            func.coalesce(players.c.nickname, "").label("nickname"),
        )
        .select_from(scores.outerjoin(players, players.c.id == scores.c.player_id))
        .where(scores.c.quiz_id == quiz_id)
    )


def _ahead_of(score: int, reached_ms: int, player_id: str) -> ColumnElement[bool]:
    """Rows ranked strictly before (score, reached_ms, player_id)."""
    return _ranked_apart(score, reached_ms, player_id, ahead=True)


def _behind(score: int, reached_ms: int, player_id: str) -> ColumnElement[bool]:
    """Rows ranked strictly after (score, reached_ms, player_id)."""
    return _ranked_apart(score, reached_ms, player_id, ahead=False)


def _ranked_apart(score: int, reached_ms: int, player_id: str, ahead: bool) -> ColumnElement[bool]:
    # Ahead: more points, else the same points reached earlier, else the greater id.
    s, r, p = scores.c.score, scores.c.reached_ms, scores.c.player_id
    more, earlier, greater = (s > score, r < reached_ms, p > player_id)
    if not ahead:
        more, earlier, greater = (s < score, r > reached_ms, p < player_id)
    return or_(
        more,
        and_(s == score, earlier),
        and_(s == score, r == reached_ms, greater),
    )


async def _total(db: AsyncConnection, quiz_id: str) -> int:
    count = await db.scalar(
        select(func.count()).select_from(scores).where(scores.c.quiz_id == quiz_id)
    )
    return int(count or 0)


def _ranked(rows: Sequence[Any], first_rank: int) -> list[common_pb2.LeaderboardEntry]:
    return [
        common_pb2.LeaderboardEntry(
            rank=first_rank + i, player_id=row.player_id, nickname=row.nickname, score=row.score
        )
        for i, row in enumerate(rows)
    ]
