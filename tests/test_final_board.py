"""A final leaderboard served from SQL after Redis let the quiz go answers exactly as
the live one did: same ranks, scores, nicknames, page tokens and neighbours.

The same nine players are seeded twice: as a closed quiz's live board in Redis (the
layout of services/live/layout.py) and as a final quiz in SQL (the rows the sync job
writes), then both are read through the running leaderboard service.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import grpc
import pytest
from quizmesh.common.v1 import common_pb2
from quizmesh.leaderboard.v1 import leaderboard_pb2, leaderboard_pb2_grpc
from redis.asyncio import Redis
from sqlalchemy import delete, insert
from sqlalchemy.ext.asyncio import AsyncEngine

from services.database.engine import create_engine
from services.database.tables import nickname_key, players, quizzes, scores
from services.live.keys import QuizKeys
from services.live.layout import pack
from tests.retry import until_available
from tests.stack import Backends, Stack

CREATED_MS = 1_760_000_000_000
TAG = uuid.uuid4().hex[:8]


@dataclass(frozen=True)
class Seat:
    """A player on the board: `reached_ms` (since the quiz's creation) is when they
    reached `points`; for 0 points, when they joined."""

    name: str
    points: int
    reached_ms: int

    @property
    def player_id(self) -> str:
        # Lowercase hex-like ids as the quiz service issues them; the name comes first
        # so that exact ties have a known order (greater id first).
        return f"{self.name}{TAG}"

    @property
    def nickname(self) -> str:
        return self.name.capitalize()


# Best first: ada 900; bo and cy 700 (bo got there first); ed and di 500 at the same
# millisecond (greater id first: "ed" > "di"); ivy 100; hal, gus and flo never scored,
# ranked by joining time, hal and gus joined at the same millisecond.
SEATS = [
    Seat("di", 500, 6_000),
    Seat("flo", 0, 1_200),
    Seat("cy", 700, 4_000),
    Seat("gus", 0, 1_100),
    Seat("ada", 900, 5_000),
    Seat("ivy", 100, 7_000),
    Seat("bo", 700, 3_000),
    Seat("hal", 0, 1_100),
    Seat("ed", 500, 6_000),
]
RANKED = ["ada", "bo", "cy", "ed", "di", "ivy", "hal", "gus", "flo"]


def new_quiz_id() -> str:
    return f"F{uuid.uuid4().hex[:10].upper()}"


@pytest.fixture(scope="module")
async def engine(backends: Backends) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(backends.database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
async def sql_quizzes(engine: AsyncEngine) -> AsyncIterator[list[str]]:
    """Quiz ids whose SQL rows are deleted after the module."""
    created: list[str] = []
    try:
        yield created
    finally:
        async with engine.begin() as db:
            for table in (scores, players):
                await db.execute(delete(table).where(table.c.quiz_id.in_(created)))
            await db.execute(delete(quizzes).where(quizzes.c.id.in_(created)))


async def insert_quiz(
    engine: AsyncEngine,
    created: list[str],
    seats: Sequence[Seat],
    *,
    state: str = "CLOSED",
    board_final: bool = True,
) -> str:
    """A quiz as the sync job leaves it: a score row per player, absolute times."""
    quiz_id = new_quiz_id()
    created.append(quiz_id)
    async with engine.begin() as db:
        await db.execute(
            insert(quizzes).values(
                id=quiz_id,
                title="Final board",
                host="alice",
                state=state,
                question_count=3,
                current_question=2,
                created_ms=CREATED_MS,
                closed_ms=CREATED_MS + 60_000,
                board_final=board_final,
            )
        )
        if seats:
            await db.execute(
                insert(players),
                [
                    {
                        "id": s.player_id,
                        "quiz_id": quiz_id,
                        "nickname": s.nickname,
                        "nickname_key": nickname_key(s.nickname),
                        # Everyone who scored joined before the first question.
                        "joined_ms": CREATED_MS + (s.reached_ms if s.points == 0 else 1_000),
                    }
                    for s in seats
                ],
            )
            await db.execute(
                insert(scores),
                [
                    {
                        "quiz_id": quiz_id,
                        "player_id": s.player_id,
                        "score": s.points,
                        "reached_ms": CREATED_MS + s.reached_ms,
                    }
                    for s in seats
                ],
            )
    return quiz_id


@pytest.fixture(scope="module")
async def live_quiz(stack: Stack, redis_client: Redis) -> AsyncIterator[str]:
    redis = redis_client
    """The closed quiz still live in Redis, times counted from its creation."""
    quiz_id = new_quiz_id()
    keys = QuizKeys(stack.key_prefix, quiz_id)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(
            keys.state,
            mapping={"status": "CLOSED", "question": 2, "epoch": CREATED_MS, "version": 12},
        )
        pipe.zadd(keys.board, {s.player_id: pack(s.points, s.reached_ms) for s in SEATS})
        pipe.hset(keys.nicknames, mapping={s.player_id: s.nickname for s in SEATS})
        await pipe.execute()
    try:
        yield quiz_id
    finally:
        await redis.delete(*keys.all())


@pytest.fixture(scope="module")
async def final_quiz(engine: AsyncEngine, sql_quizzes: list[str]) -> str:
    """The same quiz after its Redis keys expired: only its final board in SQL."""
    return await insert_quiz(engine, sql_quizzes, SEATS)


def rows(entries: Sequence[common_pb2.LeaderboardEntry]) -> list[tuple[int, str, str, int]]:
    return [(e.rank, e.player_id, e.nickname, e.score) for e in entries]


def expected(names: Sequence[str], first_rank: int) -> list[tuple[int, str, str, int]]:
    seats = {s.name: s for s in SEATS}
    return [
        (first_rank + i, seats[name].player_id, seats[name].nickname, seats[name].points)
        for i, name in enumerate(names)
    ]


async def all_pages(
    stub: leaderboard_pb2_grpc.LeaderboardServiceAsyncStub, quiz_id: str, page_size: int
) -> list[leaderboard_pb2.GetLeaderboardResponse]:
    pages = []
    token = ""
    while True:
        page = await stub.GetLeaderboard(
            leaderboard_pb2.GetLeaderboardRequest(
                quiz_id=quiz_id, page_size=page_size, page_token=token
            )
        )
        pages.append(page)
        token = page.next_page_token
        if not token:
            return pages


async def test_final_board_pages_exactly_as_the_live_board_did(
    stack: Stack, live_quiz: str, final_quiz: str
) -> None:
    live = await all_pages(stack.leaderboard, live_quiz, page_size=2)
    final = await all_pages(stack.leaderboard, final_quiz, page_size=2)

    assert final == live
    assert [rows(p.entries) for p in final] == [
        expected(RANKED[i : i + 2], first_rank=i + 1) for i in range(0, len(RANKED), 2)
    ]
    assert [p.total_players for p in final] == [9] * 5
    assert all(p.is_final for p in final)
    assert [bool(p.next_page_token) for p in final] == [True, True, True, True, False]


@pytest.mark.parametrize(("pages_walked", "names"), [(1, ["cy", "ed"]), (4, ["flo"])])
async def test_a_page_token_of_the_live_board_goes_on_where_it_was_on_the_final_one(
    stack: Stack, live_quiz: str, final_quiz: str, pages_walked: int, names: list[str]
) -> None:
    """Page tokens are cursors (points, time reached since the quiz's creation, id):
    one from the live board means the same place on the final board."""
    token = ""
    for _ in range(pages_walked):
        page = await stack.leaderboard.GetLeaderboard(
            leaderboard_pb2.GetLeaderboardRequest(quiz_id=live_quiz, page_size=2, page_token=token)
        )
        token = page.next_page_token
    answers = [
        await stack.leaderboard.GetLeaderboard(
            leaderboard_pb2.GetLeaderboardRequest(quiz_id=quiz_id, page_size=2, page_token=token)
        )
        for quiz_id in (live_quiz, final_quiz)
    ]

    assert answers[1] == answers[0]
    assert rows(answers[1].entries) == expected(names, first_rank=2 * pages_walked + 1)
    assert answers[1].total_players == 9


@pytest.mark.parametrize("neighbours", [0, 1, 3, 10])
async def test_final_player_rank_and_neighbours_match_the_live_board(
    stack: Stack, live_quiz: str, final_quiz: str, neighbours: int
) -> None:
    for seat in SEATS:
        live, final = [
            await stack.leaderboard.GetPlayerRank(
                leaderboard_pb2.GetPlayerRankRequest(
                    quiz_id=quiz_id, player_id=seat.player_id, neighbours=neighbours
                )
            )
            for quiz_id in (live_quiz, final_quiz)
        ]

        assert final == live, seat.name
        # Exactly as asked: 0 is the player alone (no default stands in for it).
        wanted = neighbours
        index = RANKED.index(seat.name)
        start = max(0, index - wanted)
        assert rows([final.player]) == expected([seat.name], first_rank=index + 1)
        assert rows(final.above) == expected(RANKED[start:index], first_rank=start + 1)
        assert rows(final.below) == expected(
            RANKED[index + 1 : index + 1 + wanted], first_rank=index + 2
        )
        assert final.total_players == 9


async def test_exact_ties_on_the_final_board_go_to_the_greater_player_id(
    stack: Stack, final_quiz: str
) -> None:
    ed = await stack.leaderboard.GetPlayerRank(
        leaderboard_pb2.GetPlayerRankRequest(quiz_id=final_quiz, player_id=f"ed{TAG}", neighbours=1)
    )

    assert rows(ed.above) == expected(["cy"], first_rank=3)
    assert rows([ed.player]) == expected(["ed"], first_rank=4)
    assert rows(ed.below) == expected(["di"], first_rank=5)


async def test_unknown_player_on_a_final_board_is_not_found_as_live(
    stack: Stack, live_quiz: str, final_quiz: str
) -> None:
    details = []
    for quiz_id in (live_quiz, final_quiz):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stack.leaderboard.GetPlayerRank(
                leaderboard_pb2.GetPlayerRankRequest(quiz_id=quiz_id, player_id="nobody")
            )
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
        details.append(refused.value.details())

    assert details == [
        f"player nobody is not in quiz {live_quiz}",
        f"player nobody is not in quiz {final_quiz}",
    ]


async def test_final_board_of_a_quiz_nobody_joined_is_empty(
    stack: Stack, engine: AsyncEngine, sql_quizzes: list[str]
) -> None:
    quiz_id = await insert_quiz(engine, sql_quizzes, [])

    page = await stack.leaderboard.GetLeaderboard(
        leaderboard_pb2.GetLeaderboardRequest(quiz_id=quiz_id)
    )

    assert list(page.entries) == []
    assert page.total_players == 0
    assert page.next_page_token == ""
    assert page.is_final


@pytest.mark.parametrize("state", ["RUNNING", "CLOSED"])
async def test_a_quiz_redis_lost_before_its_board_was_final_is_rebuilt_and_served_live(
    stack: Stack, engine: AsyncEngine, sql_quizzes: list[str], state: str
) -> None:
    # Not final: SQL alone is not the whole board, so the live state is rebuilt from
    # SQL plus the JetStream record (empty here: nobody answered) and served.
    player = Seat(f"x{state.lower()}", 0, 2_000)  # player ids are unique across quizzes
    quiz_id = await insert_quiz(engine, sql_quizzes, [player], state=state, board_final=False)

    page = await until_available(
        lambda: stack.leaderboard.GetLeaderboard(
            leaderboard_pb2.GetLeaderboardRequest(quiz_id=quiz_id)
        )
    )
    rank = await stack.leaderboard.GetPlayerRank(
        leaderboard_pb2.GetPlayerRankRequest(quiz_id=quiz_id, player_id=player.player_id)
    )

    assert [(e.player_id, e.score, e.rank) for e in page.entries] == [(player.player_id, 0, 1)]
    assert page.is_final == (state == "CLOSED")
    assert (rank.player.rank, rank.total_players) == (1, 1)


async def test_quiz_in_neither_redis_nor_sql_is_not_found(stack: Stack) -> None:
    quiz_id = new_quiz_id()

    with pytest.raises(grpc.aio.AioRpcError) as page_refused:
        await stack.leaderboard.GetLeaderboard(
            leaderboard_pb2.GetLeaderboardRequest(quiz_id=quiz_id)
        )
    with pytest.raises(grpc.aio.AioRpcError) as rank_refused:
        await stack.leaderboard.GetPlayerRank(
            leaderboard_pb2.GetPlayerRankRequest(quiz_id=quiz_id, player_id="p1")
        )

    for refused in (page_refused, rank_refused):
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
        assert refused.value.details() == f"quiz {quiz_id} not found"
