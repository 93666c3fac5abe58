"""LeaderboardService against real Redis and NATS: ranked pages, a player's
neighbourhood, refusals, and coalesced snapshots on NATS.

The quiz state is seeded straight into Redis in the layout of services/live/layout.py,
as the quiz and score services would write it.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import grpc
import pytest
from grpc_health.v1 import health_pb2
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from quizmesh.common.v1 import common_pb2, events_pb2
from quizmesh.leaderboard.v1 import leaderboard_pb2, leaderboard_pb2_grpc
from redis.asyncio import Redis

from services.leaderboard.config import Settings
from services.leaderboard.server import SERVICE_NAME, create_server
from services.live.keys import QuizKeys
from services.live.layout import pack
from services.mesh.app import ServiceApp
from services.mesh.health_client import health_status
from services.mesh.messaging import Subjects
from services.stream.config import Settings as StreamSettings
from tests.seed import Seat, Seed, seed_quiz
from tests.stack import Stack

SNAPSHOT_INTERVAL_MS = 100
# Quizzes of up to SMALL_QUIZ_PLAYERS players get a snapshot every 40 ms.
SMALL_QUIZ_PLAYERS = 3
SMALL_QUIZ_INTERVAL_MS = 40


@pytest.fixture(scope="module")
def lb_settings(module_stack: Stack) -> Settings:
    return Settings(
        **module_stack.common()
        | {
            "shutdown_grace_seconds": 1.0,
            "small_quiz_players": SMALL_QUIZ_PLAYERS,
            "small_quiz_board_interval_ms": SMALL_QUIZ_INTERVAL_MS,
        },
        snapshot_interval_ms=SNAPSHOT_INTERVAL_MS,
    )


@pytest.fixture(scope="module")
async def lb_app(lb_settings: Settings) -> AsyncIterator[ServiceApp]:
    app = await create_server(lb_settings)
    await app.start()
    try:
        yield app
    finally:
        await app.stop(lb_settings.shutdown_grace_seconds)


@pytest.fixture(scope="module")
async def lb_stub(
    lb_app: ServiceApp,
) -> AsyncIterator[leaderboard_pb2_grpc.LeaderboardServiceAsyncStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{lb_app.port}") as channel:
        yield leaderboard_pb2_grpc.LeaderboardServiceStub(channel)


@pytest.fixture(scope="module")
def lb_seed(lb_settings: Settings, redis_client: Redis) -> Seed:
    return functools.partial(seed_quiz, redis_client, lb_settings.key_prefix)


def rows(entries: Sequence[common_pb2.LeaderboardEntry]) -> list[tuple[int, str, str, int]]:
    return [(e.rank, e.player_id, e.nickname, e.score) for e in entries]


# Seven players, best first once ranked: p5 700, p3 600, p7 500, p1 400, p6 300, p2 200, p4 100.
SEVEN = [
    Seat("p1", "Ada", 400, 1_000),
    Seat("p2", "Bo", 200, 1_100),
    Seat("p3", "Cy", 600, 1_200),
    Seat("p4", "Di", 100, 1_300),
    Seat("p5", "Ed", 700, 1_400),
    Seat("p6", "Flo", 300, 1_500),
    Seat("p7", "Gus", 500, 1_600),
]


async def test_leaderboard_lists_best_players_first_with_ranks(
    lb_stub: leaderboard_pb2_grpc.LeaderboardServiceAsyncStub, lb_seed: Seed
) -> None:
    quiz_id = await lb_seed(SEVEN)

    page = await lb_stub.GetLeaderboard(
        leaderboard_pb2.GetLeaderboardRequest(quiz_id=quiz_id, page_size=3)
    )

    assert rows(page.entries) == [(1, "p5", "Ed", 700), (2, "p3", "Cy", 600), (3, "p7", "Gus", 500)]
    assert page.total_players == 7
    assert page.next_page_token
    assert not page.is_final


async def test_reads_survive_a_redis_that_forgot_its_scripts(
    lb_stub: leaderboard_pb2_grpc.LeaderboardServiceAsyncStub, lb_seed: Seed, redis_client: Redis
) -> None:
    """After a Redis restart the script cache is empty (NOSCRIPT): the reads load
    their scripts again instead of failing."""
    quiz_id = await lb_seed(SEVEN)
    request = leaderboard_pb2.GetLeaderboardRequest(quiz_id=quiz_id, page_size=3)
    before = await lb_stub.GetLeaderboard(request)

    await redis_client.script_flush()

    after = await lb_stub.GetLeaderboard(request)
    rank = await lb_stub.GetPlayerRank(
        leaderboard_pb2.GetPlayerRankRequest(quiz_id=quiz_id, player_id="p7", neighbours=1)
    )
    assert rows(after.entries) == rows(before.entries)
    assert rows([rank.player]) == [(3, "p7", "Gus", 500)]


async def test_next_page_token_walks_the_whole_board_and_ends_empty(
    lb_stub: leaderboard_pb2_grpc.LeaderboardServiceAsyncStub, lb_seed: Seed
) -> None:
    quiz_id = await lb_seed(SEVEN)
    seen: list[tuple[int, str, str, int]] = []
    token = ""
    pages = 0
    while True:
        page = await lb_stub.GetLeaderboard(
            leaderboard_pb2.GetLeaderboardRequest(quiz_id=quiz_id, page_size=3, page_token=token)
        )
        pages += 1
        seen += rows(page.entries)
        token = page.next_page_token
        if not token:
            break

    assert pages == 3
    assert [r[1] for r in seen] == ["p5", "p3", "p7", "p1", "p6", "p2", "p4"]
    assert [r[0] for r in seen] == [1, 2, 3, 4, 5, 6, 7]


async def test_the_next_page_starts_after_the_last_entry_seen_while_the_board_moves(
    lb_stub: leaderboard_pb2_grpc.LeaderboardServiceAsyncStub,
    lb_settings: Settings,
    redis_client: Redis,
    lb_seed: Seed,
) -> None:
    # Ed 700, Cy 600, Gus 500 | Ada 400, Flo 300, Bo 200, Di 100
    quiz_id = await lb_seed(SEVEN)
    first = await lb_stub.GetLeaderboard(
        leaderboard_pb2.GetLeaderboardRequest(quiz_id=quiz_id, page_size=3)
    )
    # Between the two pages Flo overtakes Cy and Gus: an offset would show Gus again.
    keys = QuizKeys(lb_settings.key_prefix, quiz_id)
    await redis_client.zadd(keys.board, {"p6": pack(650, 1_500)})

    second = await lb_stub.GetLeaderboard(
        leaderboard_pb2.GetLeaderboardRequest(
            quiz_id=quiz_id, page_size=3, page_token=first.next_page_token
        )
    )

    assert [e.player_id for e in first.entries] == ["p5", "p3", "p7"]
    # Everyone ranked after Gus, with their ranks now: no one twice.
    assert rows(second.entries) == [
        (5, "p1", "Ada", 400),
        (6, "p2", "Bo", 200),
        (7, "p4", "Di", 100),
    ]


async def test_exact_ties_across_a_page_boundary_are_neither_repeated_nor_skipped(
    lb_stub: leaderboard_pb2_grpc.LeaderboardServiceAsyncStub, lb_seed: Seed
) -> None:
    # Five players with the same points reached at the same moment: ordered by id.
    quiz_id = await lb_seed([Seat(f"t{i}", f"T{i}", 100, 50) for i in range(5)])
    seen: list[str] = []
    token = ""
    while True:
        page = await lb_stub.GetLeaderboard(
            leaderboard_pb2.GetLeaderboardRequest(quiz_id=quiz_id, page_size=2, page_token=token)
        )
        seen += [e.player_id for e in page.entries]
        token = page.next_page_token
        if not token:
            break

    assert seen == ["t4", "t3", "t2", "t1", "t0"]


async def test_page_size_zero_means_ten(
    lb_stub: leaderboard_pb2_grpc.LeaderboardServiceAsyncStub, lb_seed: Seed
) -> None:
    quiz_id = await lb_seed([Seat(f"p{i}", f"n{i}", 10 * i, i) for i in range(12)])

    page = await lb_stub.GetLeaderboard(leaderboard_pb2.GetLeaderboardRequest(quiz_id=quiz_id))

    assert [e.player_id for e in page.entries] == [f"p{i}" for i in range(11, 1, -1)]
    assert page.next_page_token


async def test_equal_scores_rank_whoever_reached_them_first(
    lb_stub: leaderboard_pb2_grpc.LeaderboardServiceAsyncStub, lb_seed: Seed
) -> None:
    quiz_id = await lb_seed(
        [
            Seat("late", "Late", 500, 9_000),
            Seat("early", "Early", 500, 2_000),
            Seat("middle", "Middle", 500, 5_000),
            Seat("top", "Top", 501, 9_500),
        ]
    )

    page = await lb_stub.GetLeaderboard(leaderboard_pb2.GetLeaderboardRequest(quiz_id=quiz_id))

    assert rows(page.entries) == [
        (1, "top", "Top", 501),
        (2, "early", "Early", 500),
        (3, "middle", "Middle", 500),
        (4, "late", "Late", 500),
    ]
    assert page.next_page_token == ""


async def test_closed_quiz_leaderboard_is_final(
    lb_stub: leaderboard_pb2_grpc.LeaderboardServiceAsyncStub, lb_seed: Seed
) -> None:
    quiz_id = await lb_seed(SEVEN[:2], status="CLOSED")

    page = await lb_stub.GetLeaderboard(leaderboard_pb2.GetLeaderboardRequest(quiz_id=quiz_id))

    assert page.is_final
    assert rows(page.entries) == [(1, "p1", "Ada", 400), (2, "p2", "Bo", 200)]


async def test_player_rank_comes_with_neighbours_on_each_side(
    lb_stub: leaderboard_pb2_grpc.LeaderboardServiceAsyncStub, lb_seed: Seed
) -> None:
    quiz_id = await lb_seed(SEVEN)

    rank = await lb_stub.GetPlayerRank(
        leaderboard_pb2.GetPlayerRankRequest(quiz_id=quiz_id, player_id="p1", neighbours=3)
    )

    assert rows([rank.player]) == [(4, "p1", "Ada", 400)]
    assert rows(rank.above) == [(1, "p5", "Ed", 700), (2, "p3", "Cy", 600), (3, "p7", "Gus", 500)]
    assert rows(rank.below) == [(5, "p6", "Flo", 300), (6, "p2", "Bo", 200), (7, "p4", "Di", 100)]
    assert rank.total_players == 7


async def test_player_rank_gives_the_neighbours_asked_for_and_stops_at_the_top(
    lb_stub: leaderboard_pb2_grpc.LeaderboardServiceAsyncStub, lb_seed: Seed
) -> None:
    quiz_id = await lb_seed(SEVEN)

    middle = await lb_stub.GetPlayerRank(
        leaderboard_pb2.GetPlayerRankRequest(quiz_id=quiz_id, player_id="p1", neighbours=2)
    )
    top = await lb_stub.GetPlayerRank(
        leaderboard_pb2.GetPlayerRankRequest(quiz_id=quiz_id, player_id="p5", neighbours=2)
    )
    alone = await lb_stub.GetPlayerRank(
        leaderboard_pb2.GetPlayerRankRequest(quiz_id=quiz_id, player_id="p1")
    )

    assert [e.player_id for e in middle.above] == ["p3", "p7"]
    assert [e.player_id for e in middle.below] == ["p6", "p2"]
    assert rows([top.player]) == [(1, "p5", "Ed", 700)]
    assert list(top.above) == []
    assert [e.player_id for e in top.below] == ["p3", "p7"]
    # None asked for (0 is never replaced by a default): the player alone.
    assert (list(alone.above), list(alone.below)) == ([], [])
    assert alone.player.player_id == "p1"


@pytest.mark.parametrize(
    ("page_size", "page_token", "detail"),
    [
        (-1, "", "page_size must be between 0 and 1000, got -1"),
        (1001, "", "page_size must be between 0 and 1000, got 1001"),
        (10, "not a token", "page_token is not valid"),
        (10, "MTA", "page_token is not valid"),  # base64 of a bare "10": still not ours
    ],
)
async def test_bad_page_request_is_invalid_argument(
    lb_stub: leaderboard_pb2_grpc.LeaderboardServiceAsyncStub,
    lb_seed: Seed,
    page_size: int,
    page_token: str,
    detail: str,
) -> None:
    quiz_id = await lb_seed(SEVEN[:1])

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await lb_stub.GetLeaderboard(
            leaderboard_pb2.GetLeaderboardRequest(
                quiz_id=quiz_id, page_size=page_size, page_token=page_token
            )
        )

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert detail in (refused.value.details() or "")


@pytest.mark.parametrize("neighbours", [-1, 11])
async def test_neighbours_out_of_range_is_invalid_argument(
    lb_stub: leaderboard_pb2_grpc.LeaderboardServiceAsyncStub, lb_seed: Seed, neighbours: int
) -> None:
    quiz_id = await lb_seed(SEVEN[:1])

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await lb_stub.GetPlayerRank(
            leaderboard_pb2.GetPlayerRankRequest(
                quiz_id=quiz_id, player_id="p1", neighbours=neighbours
            )
        )

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details() == f"neighbours must be between 0 and 10, got {neighbours}"


async def test_unknown_quiz_is_not_found(
    lb_stub: leaderboard_pb2_grpc.LeaderboardServiceAsyncStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as page_refused:
        await lb_stub.GetLeaderboard(leaderboard_pb2.GetLeaderboardRequest(quiz_id="NOSUCHQUIZ"))
    with pytest.raises(grpc.aio.AioRpcError) as rank_refused:
        await lb_stub.GetPlayerRank(
            leaderboard_pb2.GetPlayerRankRequest(quiz_id="NOSUCHQUIZ", player_id="p1")
        )

    for refused in (page_refused, rank_refused):
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
        assert refused.value.details() == "quiz NOSUCHQUIZ not found"


async def test_unknown_player_is_not_found(
    lb_stub: leaderboard_pb2_grpc.LeaderboardServiceAsyncStub, lb_seed: Seed
) -> None:
    quiz_id = await lb_seed(SEVEN)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await lb_stub.GetPlayerRank(
            leaderboard_pb2.GetPlayerRankRequest(quiz_id=quiz_id, player_id="nobody")
        )

    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    assert refused.value.details() == f"player nobody is not in quiz {quiz_id}"


async def test_health_is_serving_with_its_dependencies_up(lb_app: ServiceApp) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{lb_app.port}") as channel:
        status = await health_status(channel, SERVICE_NAME, seconds=None)

    assert status == health_pb2.HealthCheckResponse.SERVING


class SnapshotInbox:
    """Collects the snapshots published for one quiz."""

    def __init__(self) -> None:
        self.snapshots: list[common_pb2.LeaderboardSnapshot] = []
        # When each snapshot arrived (monotonic seconds).
        self.arrivals: list[float] = []
        self._arrived = asyncio.Event()

    async def on_message(self, msg: Msg) -> None:
        update = events_pb2.BoardUpdate.FromString(msg.data)
        if update.HasField("snapshot"):
            self.snapshots.append(update.snapshot)
            self.arrivals.append(time.monotonic())
        self._arrived.set()

    async def wait_for(
        self, matches: Callable[[common_pb2.LeaderboardSnapshot], bool], seconds: float = 3.0
    ) -> common_pb2.LeaderboardSnapshot:
        async with asyncio.timeout(seconds):
            while True:
                for snapshot in reversed(self.snapshots):
                    if matches(snapshot):
                        return snapshot
                self._arrived.clear()
                await self._arrived.wait()


@pytest.fixture
async def lb_inbox(
    lb_app: ServiceApp, nats_client: NatsClient, lb_settings: Settings
) -> AsyncIterator[Callable[[str], Awaitable[SnapshotInbox]]]:
    subscriptions: list[Subscription] = []

    async def subscribe(quiz_id: str) -> SnapshotInbox:
        inbox = SnapshotInbox()
        subscriptions.append(
            await nats_client.subscribe(
                Subjects(lb_settings.nats_prefix).leaderboard(quiz_id), cb=inbox.on_message
            )
        )
        await nats_client.flush()
        return inbox

    try:
        yield subscribe
    finally:
        for subscription in subscriptions:
            await subscription.unsubscribe()


async def test_burst_of_answers_yields_few_snapshots_ending_with_the_final_board(
    lb_settings: Settings,
    redis_client: Redis,
    nats_client: NatsClient,
    lb_seed: Seed,
    lb_inbox: Callable[[str], Awaitable[SnapshotInbox]],
) -> None:
    players = [f"p{k}" for k in range(5)]
    quiz_id = await lb_seed([Seat(p, p.upper(), 0, 0) for p in players], version=0)
    keys = QuizKeys(lb_settings.key_prefix, quiz_id)
    subjects = Subjects(lb_settings.nats_prefix)
    inbox = await lb_inbox(quiz_id)
    points = dict.fromkeys(players, 0)

    for i in range(200):
        player = players[i % 5]
        points[player] += 10 * (i % 5 + 1)
        async with redis_client.pipeline(transaction=True) as pipe:
            pipe.zadd(keys.board, {player: pack(points[player], i)})
            pipe.hincrby(keys.state, "version", 1)
            await pipe.execute()
        await nats_client.publish(subjects.board_changed(quiz_id), b"")
    await nats_client.flush()

    final = await inbox.wait_for(lambda s: s.version == 200)
    # Give stragglers a few ticks: a burst must still end in a handful of snapshots.
    await asyncio.sleep(3 * SNAPSHOT_INTERVAL_MS / 1000)

    assert 1 <= len(inbox.snapshots) < 20
    assert inbox.snapshots[-1].version == 200
    assert [(e.rank, e.player_id, e.score) for e in final.entries] == [
        (1, "p4", 2000),
        (2, "p3", 1600),
        (3, "p2", 1200),
        (4, "p1", 800),
        (5, "p0", 400),
    ]
    assert final.quiz_id == quiz_id
    assert final.total_players == 5
    versions = [s.version for s in inbox.snapshots]
    assert versions == sorted(versions)


@pytest.mark.parametrize("kind", ["board", "events"])  # answers arrive as board hints
async def test_each_kind_of_change_brings_a_snapshot(
    lb_settings: Settings,
    nats_client: NatsClient,
    lb_seed: Seed,
    lb_inbox: Callable[[str], Awaitable[SnapshotInbox]],
    kind: str,
) -> None:
    quiz_id = await lb_seed(SEVEN[:3], version=7, status="CLOSED")
    inbox = await lb_inbox(quiz_id)

    await nats_client.publish(f"{lb_settings.nats_prefix}.{kind}.{quiz_id}", b"")

    snapshot = await inbox.wait_for(lambda s: True)
    assert snapshot.version == 7
    assert snapshot.is_final
    assert [e.player_id for e in snapshot.entries] == ["p3", "p1", "p2"]


async def test_idle_quiz_gets_no_snapshots(
    lb_seed: Seed, lb_inbox: Callable[[str], Awaitable[SnapshotInbox]]
) -> None:
    quiz_id = await lb_seed(SEVEN[:3])
    inbox = await lb_inbox(quiz_id)

    await asyncio.sleep(3 * SNAPSHOT_INTERVAL_MS / 1000)

    assert inbox.snapshots == []


async def test_a_broken_quiz_does_not_stop_snapshots_of_others(
    lb_settings: Settings,
    redis_client: Redis,
    nats_client: NatsClient,
    lb_seed: Seed,
    lb_inbox: Callable[[str], Awaitable[SnapshotInbox]],
) -> None:
    broken = await lb_seed([])
    await redis_client.set(QuizKeys(lb_settings.key_prefix, broken).board, "not a sorted set")
    healthy = await lb_seed(SEVEN[:2], version=3)
    inbox = await lb_inbox(healthy)
    subjects = Subjects(lb_settings.nats_prefix)

    await nats_client.publish(subjects.board_changed(broken), b"")
    await nats_client.publish(subjects.board_changed(healthy), b"")

    snapshot = await inbox.wait_for(lambda s: s.version == 3)
    assert [e.player_id for e in snapshot.entries] == ["p1", "p2"]


async def test_a_busy_quiz_gets_snapshots_at_its_sizes_pace(
    lb_settings: Settings,
    nats_client: NatsClient,
    lb_seed: Seed,
    lb_inbox: Callable[[str], Awaitable[SnapshotInbox]],
) -> None:
    small = await lb_seed(SEVEN[:SMALL_QUIZ_PLAYERS])
    large = await lb_seed(SEVEN)
    inboxes = {small: await lb_inbox(small), large: await lb_inbox(large)}
    subjects = Subjects(lb_settings.nats_prefix)

    # Answers all the time: a hint every 5 ms to each quiz for 1.2 s.
    for _ in range(240):
        for quiz_id in inboxes:
            await nats_client.publish(subjects.board_changed(quiz_id), b"")
        await asyncio.sleep(0.005)
    await asyncio.sleep(3 * SNAPSHOT_INTERVAL_MS / 1000)

    def gaps_ms(inbox: SnapshotInbox) -> list[float]:
        return [(b - a) * 1000 for a, b in itertools.pairwise(inbox.arrivals)]

    # Never faster than the pace (a little slack for NATS's delivery jitter), and
    # not much slower either: the snapshot that waits goes out when its turn comes.
    small_gaps, large_gaps = gaps_ms(inboxes[small]), gaps_ms(inboxes[large])
    assert min(small_gaps) > SMALL_QUIZ_INTERVAL_MS - 10
    assert min(large_gaps) > SNAPSHOT_INTERVAL_MS - 10
    assert statistics.median(small_gaps) < SNAPSHOT_INTERVAL_MS
    assert len(inboxes[small].snapshots) > len(inboxes[large].snapshots)


def test_snapshots_are_made_at_the_pace_watchers_get_boards() -> None:
    # A snapshot that arrives between two board slots would wait for the next one.
    leaderboard = Settings.model_fields["snapshot_interval_ms"].default
    board_slot = StreamSettings.model_fields["board_interval_seconds"].default
    assert leaderboard == board_slot * 1000
