"""A stream process's copy of a quiz's board (services/stream/local_board.py) ranks
exactly as Redis does: the higher packed score first and, among equal ones, the
greater id in byte order first. The property test plays random boards, with many
ties, through random batches of changes into the copy and into a real Redis
sorted set side by side, and after each batch every place the copy gives is
Redis's ZREVRANK + 1 and layout.points_of(ZSCORE)."""

from __future__ import annotations

import itertools
import string
import uuid
from collections.abc import AsyncIterator, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from services.live.layout import MAX_POINTS, pack, points_of
from services.stream.local_board import LocalBoard
from tests.stack import Backends, forget

Changes = list[tuple[str, float | None]]


@pytest.fixture(scope="module")
async def prefix(backends: Backends) -> AsyncIterator[str]:
    tag = uuid.uuid4().hex[:10]
    try:
        yield f"t{tag}:"
    finally:
        await forget(backends, f"t{tag}:", f"t{tag}")


_keys = itertools.count()


async def redis_board(redis: Redis, prefix: str, entries: Sequence[tuple[str, float]]) -> str:
    """A sorted set of its own holding `entries` (in order, as ZADDs)."""
    key = f"{prefix}board:{next(_keys)}"
    if entries:
        await redis.zadd(key, dict(entries))
    return key


async def redis_apply(redis: Redis, key: str, changes: Changes) -> None:
    pipe = redis.pipeline(transaction=False)
    for pid, score in changes:
        if score is None:
            pipe.zrem(key, pid)
        else:
            pipe.zadd(key, {pid: score})
    await pipe.execute()


async def redis_places(
    redis: Redis, key: str, player_ids: Sequence[str]
) -> dict[str, tuple[int, int]]:
    """What LiveBoard.places reads: ZREVRANK + 1 and the points of ZSCORE."""
    pipe = redis.pipeline(transaction=False)
    for pid in player_ids:
        pipe.zrevrank(key, pid)
        pipe.zscore(key, pid)
    replies = await pipe.execute()
    return {
        pid: (rank + 1, points_of(score))
        for pid, rank, score in zip(player_ids, replies[::2], replies[1::2], strict=True)
        if rank is not None
    }


async def assert_same(redis: Redis, key: str, board: LocalBoard, asked: Sequence[str]) -> None:
    assert len(board) == await redis.zcard(key)
    assert board.places(asked) == await redis_places(redis, key, asked)
    for pid in asked:
        assert board.score_of(pid) == await redis.zscore(key, pid)


# Ids of every length and case whose byte order differs from other orders people
# assume: "B" < "a", "p1" < "p10" < "p2", digits before letters.
TRICKY = ["p1", "P10", "p10", "p2", "ab", "a", "b", "B", "Z", "0", "9", "aB", "Ab"]
player_id = st.one_of(
    st.sampled_from(TRICKY),
    st.text(string.ascii_letters + string.digits, min_size=1, max_size=32),
    st.integers(0, 2**64 - 1).map(lambda n: f"{n:016x}"),
)
# Few distinct values, so that most players share theirs with others.
packed = st.one_of(
    st.builds(pack, st.integers(0, 3), st.integers(0, 3)),
    st.sampled_from([pack(MAX_POINTS, 0), pack(0, 2**31 - 1), pack(1000, 86_400_000)]),
)


@st.composite
def games(
    draw: st.DrawFn,
) -> tuple[list[str], list[tuple[str, float]], list[tuple[Changes, list[str]]]]:
    """A pool of ids, a first board from it, and batches of changes (adds, moves up
    and down, leaving, coming back), each with the players asked for after it."""
    pool = draw(st.lists(player_id, min_size=1, max_size=30, unique=True))
    values = draw(st.lists(packed, min_size=1, max_size=4))
    member = st.sampled_from(pool)
    score = st.sampled_from(values)
    first = draw(st.lists(st.tuples(member, score), max_size=30))
    change = st.tuples(member, st.one_of(score, st.none()))
    batches = draw(
        st.lists(
            st.tuples(
                st.lists(change, max_size=20),
                st.lists(st.one_of(member, player_id), max_size=12),
            ),
            min_size=1,
            max_size=6,
        )
    )
    return pool, first, batches


@settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(game=games())
async def test_every_place_is_what_redis_ranks(
    redis_client: Redis,
    prefix: str,
    game: tuple[list[str], list[tuple[str, float]], list[tuple[Changes, list[str]]]],
) -> None:
    pool, first, batches = game
    key = await redis_board(redis_client, prefix, first)
    try:
        board = LocalBoard()
        board.reset(first)
        await assert_same(redis_client, key, board, pool)
        for changes, asked in batches:
            board.apply(changes)
            await redis_apply(redis_client, key, changes)
            await assert_same(redis_client, key, board, asked)
            await assert_same(redis_client, key, board, pool)
    finally:
        await redis_client.delete(key)


async def test_a_bulk_enrolment_tie_ranks_as_redis(redis_client: Redis, prefix: str) -> None:
    """5,000 players enrolled in one millisecond share one packed value at 0 points;
    some answer (one at a time, and several at the same millisecond), some leave."""
    enrolled = [f"{n:016x}" for n in range(0, 5_000 * 7919, 7919)] + [f"p{n}" for n in range(500)]
    first = [(pid, pack(0, 12)) for pid in enrolled]
    key = await redis_board(redis_client, prefix, first)
    try:
        board = LocalBoard()
        board.reset(first)
        answers: Changes = [(pid, pack(10, 40)) for pid in enrolled[::7]]
        answers += [(pid, None) for pid in enrolled[3::11]]
        answers += [(pid, pack(0, 12)) for pid in ["new1", "new10", "New2"]]
        board.apply(answers)
        await redis_apply(redis_client, key, answers)
        everyone = [*enrolled, "new1", "new10", "New2", "absent"]
        assert board.places(everyone) == await redis_places(redis_client, key, everyone)
    finally:
        await redis_client.delete(key)


async def test_players_joining_past_the_reserved_room_rank_as_redis(
    redis_client: Redis, prefix: str
) -> None:
    """A copy reset small that then takes thousands of joins: its tables fill up
    (1,024 slots of room after a reset of one) and grow."""
    key = await redis_board(redis_client, prefix, [("host", pack(0, 0))])
    try:
        board = LocalBoard()
        board.reset([("host", pack(0, 0))])
        everyone = ["host"]
        for batch, size in enumerate([1024, 500, 500, 500, 500, 500]):
            joins: Changes = [(f"j{batch}x{n}", pack(n % 3, batch)) for n in range(size)]
            board.apply(joins)
            await redis_apply(redis_client, key, joins)
            # One never seen who leaves changes nothing, with the tables full too.
            board.apply([("ghost", None)])
            everyone += [pid for pid, _ in joins]
            assert board.places(everyone) == await redis_places(redis_client, key, everyone)
    finally:
        await redis_client.delete(key)


# The plain rules, one at a time.


def board_of(*entries: tuple[str, float]) -> LocalBoard:
    board = LocalBoard()
    board.reset(entries)
    return board


def test_more_points_rank_first_and_equal_points_by_who_reached_them_first() -> None:
    board = board_of(("late", pack(10, 900)), ("early", pack(10, 100)), ("top", pack(11, 999)))
    assert board.places(["late", "early", "top"]) == {
        "top": (1, 11),
        "early": (2, 10),
        "late": (3, 10),
    }


def test_equal_packed_scores_rank_the_greater_id_in_byte_order_first() -> None:
    same = pack(0, 5)
    board = board_of(*((pid, same) for pid in ["a", "B", "ab", "b", "p1", "p10", "p2"]))
    ranks = board.places(["a", "B", "ab", "b", "p1", "p10", "p2"])
    assert sorted(ranks, key=lambda pid: ranks[pid][0]) == ["p2", "p10", "p1", "b", "ab", "a", "B"]
    assert {points for _, points in ranks.values()} == {0}


def test_a_player_who_leaves_is_no_longer_ranked_and_those_below_move_up() -> None:
    board = board_of(("a", pack(3, 0)), ("b", pack(2, 0)), ("c", pack(1, 0)))
    board.apply([("a", None)])
    assert board.places(["a", "b", "c"]) == {"b": (1, 2), "c": (2, 1)}
    assert len(board) == 2
    assert board.score_of("a") is None


def test_a_player_who_comes_back_is_ranked_again() -> None:
    board = board_of(("a", pack(3, 0)), ("b", pack(2, 0)))
    board.apply([("a", None)])
    board.apply([("a", pack(1, 0))])
    assert board.places(["a", "b"]) == {"b": (1, 2), "a": (2, 1)}


def test_a_player_not_on_the_board_is_left_out() -> None:
    board = board_of(("a", pack(1, 0)))
    too_long = "x" * 40
    assert board.places(["nobody", "a", too_long, "é", "a\0"]) == {"a": (1, 1)}
    assert board.score_of("nobody") is None
    assert LocalBoard().places(["a"]) == {}


def test_a_change_moves_a_player_up_or_down_and_the_last_in_a_batch_counts() -> None:
    board = board_of(("a", pack(1, 0)), ("b", pack(2, 0)), ("c", pack(3, 0)))
    board.apply([("a", pack(9, 0)), ("c", pack(0, 0)), ("b", None), ("b", pack(5, 0))])
    assert board.places(["a", "b", "c"]) == {"a": (1, 9), "b": (2, 5), "c": (3, 0)}
    board.apply([("new", pack(7, 0)), ("new", None)])
    assert board.places(["new"]) == {}
    assert len(board) == 3


def test_reset_replaces_everything_whatever_the_order_of_the_entries() -> None:
    board = board_of(("old", pack(5, 0)))
    entries = [("x", pack(1, 0)), ("y", pack(1, 0)), ("z", pack(2, 0))]
    board.reset(entries)
    expected = {"z": (1, 2), "y": (2, 1), "x": (3, 1)}
    assert board.places(["old", "x", "y", "z"]) == expected
    board.reset(reversed(entries))
    assert board.places(["x", "y", "z"]) == expected
    board.reset([])
    assert len(board) == 0
    assert board.places(["x"]) == {}


def test_the_last_entry_of_a_player_repeated_in_a_reset_counts() -> None:
    board = board_of(("a", pack(1, 0)), ("b", pack(2, 0)), ("a", pack(3, 0)))
    assert board.places(["a", "b"]) == {"a": (1, 3), "b": (2, 2)}
    assert len(board) == 2


@pytest.mark.parametrize(
    "change",
    [("x" * 33, pack(1, 0)), ("é", pack(1, 0)), ("ok", float("nan")), ("ok", float("inf"))],
)
def test_an_id_no_player_can_have_or_a_score_not_finite_is_refused_and_changes_nothing(
    change: tuple[str, float],
) -> None:
    board = board_of(("a", pack(1, 0)))
    with pytest.raises(ValueError, match=r"player id|finite"):
        board.apply([("b", pack(2, 0)), change])
    assert board.places(["a", "b"]) == {"a": (1, 1)}
    assert len(board) == 1
