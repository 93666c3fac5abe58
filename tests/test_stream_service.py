"""StreamService against real Redis and NATS/JetStream: lifecycle events and
leaderboards fanned out to many watchers, resume, a player's own standing,
refusals, heartbeats and a graceful stop.

Lifecycle events are published on JetStream and snapshots on core NATS exactly as
the quiz and leaderboard services do; quiz state is seeded straight into Redis.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc
import pytest
from google.api import httpbody_pb2
from nats.aio.client import Client as NatsClient
from quizmesh.common.v1 import common_pb2, events_pb2
from quizmesh.stream.v1 import stream_pb2, stream_pb2_grpc
from redis.asyncio import Redis

from services.identity.tokens import Role, TokenIssuer
from services.live.board import LiveBoard
from services.live.keys import QuizKeys
from services.live.layout import pack
from services.live.pipeline import PipelinedRedis, RedisAddress
from services.mesh.app import ServiceApp
from services.mesh.errors import ResourceExhausted
from services.mesh.messaging import Subjects
from services.stream.config import Settings
from services.stream.frames import (
    CONTENT_TYPE,
    Frame,
    Standing,
    StandingHead,
    board_frame,
    quiz_frame,
    sse,
)
from services.stream.hub import QuizHubs
from services.stream.server import create_server
from services.stream.service import deliver
from services.stream.watches import LeaderboardWatch, QuizWatch
from tests.seed import Seat, Seed, seed_quiz
from tests.stack import Backends, Stack

HEARTBEAT_SECONDS = 0.5

# The generated async stub is for the type checker only (@type_check_only).
Stub: TypeAlias = "stream_pb2_grpc.StreamServiceAsyncStub"


@pytest.fixture(scope="module")
def stream_settings(module_stack: Stack) -> Settings:
    return Settings(
        **module_stack.common() | {"shutdown_grace_seconds": 5.0},
        heartbeat_seconds=HEARTBEAT_SECONDS,
    )


@pytest.fixture(scope="module")
def stream_issuer(backends: Backends) -> TokenIssuer:
    return backends.issuer()


@pytest.fixture(scope="module")
async def stream_app(stream_settings: Settings) -> AsyncIterator[ServiceApp]:
    app = await create_server(stream_settings)
    await app.start()
    try:
        yield app
    finally:
        await app.stop(1.0)


@pytest.fixture(scope="module")
async def stream_stub(stream_app: ServiceApp) -> AsyncIterator[Stub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stream_app.port}") as channel:
        yield stream_pb2_grpc.StreamServiceStub(channel)


@pytest.fixture(scope="module")
def stream_seed(stream_settings: Settings, redis_client: Redis) -> Seed:
    # Quizzes in the lobby: open, no question asked yet.
    return functools.partial(
        seed_quiz, redis_client, stream_settings.key_prefix, status="OPEN", question=-1
    )


def hubs_of(app: ServiceApp) -> QuizHubs:
    """The server's hub registry, found through its shutdown hook."""
    closer = app.before_stop[0]
    hubs = getattr(closer, "__self__", None)
    assert isinstance(hubs, QuizHubs)
    return hubs


async def next_event(
    call: grpc.aio.UnaryStreamCall[stream_pb2.WatchQuizRequest, stream_pb2.WatchQuizResponse],
    seconds: float = 3.0,
) -> events_pb2.QuizEvent:
    """The next WatchQuiz event that is not a heartbeat."""
    async with asyncio.timeout(seconds):
        while True:
            response = await call.read()
            # read() gives a response or grpc.aio.EOF.
            assert isinstance(response, stream_pb2.WatchQuizResponse), "the stream ended"
            if not response.heartbeat:
                return response.event


async def next_board(
    call: grpc.aio.UnaryStreamCall[
        stream_pb2.WatchLeaderboardRequest, stream_pb2.WatchLeaderboardResponse
    ],
    seconds: float = 3.0,
) -> stream_pb2.WatchLeaderboardResponse:
    """The next WatchLeaderboard message that is not a heartbeat."""
    async with asyncio.timeout(seconds):
        while True:
            response = await call.read()
            # read() gives a response or grpc.aio.EOF.
            assert isinstance(response, stream_pb2.WatchLeaderboardResponse), "the stream ended"
            if not response.heartbeat:
                return response


async def publish_event(
    nc: NatsClient, subjects: Subjects, event: events_pb2.QuizEvent, msg_id: str
) -> int:
    ack = await nc.jetstream().publish(
        subjects.events(event.quiz_id),
        event.SerializeToString(),
        headers={"Nats-Msg-Id": msg_id},
    )
    return int(ack.seq)


async def publish_snapshot(
    nc: NatsClient, subjects: Subjects, snapshot: common_pb2.LeaderboardSnapshot
) -> None:
    # As the leaderboard service sends it: a complete BoardUpdate (changing nothing of
    # the board; the copies of it then fall back on Redis).
    update = events_pb2.BoardUpdate(snapshot=snapshot, complete=True)
    await nc.publish(subjects.leaderboard(snapshot.quiz_id), update.SerializeToString())
    await nc.flush()


def lifecycle(quiz_id: str) -> list[tuple[str, events_pb2.QuizEvent]]:
    """A one-question quiz from start to close, with each event's message id."""
    return [
        (
            f"{quiz_id}:started",
            events_pb2.QuizEvent(
                quiz_id=quiz_id, quiz_started=events_pb2.QuizStarted(question_count=1)
            ),
        ),
        (
            f"{quiz_id}:q0:opened",
            events_pb2.QuizEvent(
                quiz_id=quiz_id,
                question_opened=events_pb2.QuestionOpened(
                    question=common_pb2.QuestionView(index=0, text="2+2?", choices=["3", "4"]),
                    question_count=1,
                ),
            ),
        ),
        (
            f"{quiz_id}:q0:closed",
            events_pb2.QuizEvent(
                quiz_id=quiz_id,
                question_closed=events_pb2.QuestionClosed(index=0, correct_choice=1),
            ),
        ),
        (
            f"{quiz_id}:closed",
            events_pb2.QuizEvent(
                quiz_id=quiz_id,
                quiz_closed=events_pb2.QuizClosed(reason=events_pb2.CLOSE_REASON_HOST),
            ),
        ),
    ]


LIFECYCLE_KINDS = ["quiz_started", "question_opened", "question_closed", "quiz_closed"]
TRIO = [Seat("p1", "Ada", 300, 1_000), Seat("p2", "Bo", 200, 2_000), Seat("p3", "Cy", 100, 3_000)]


async def test_quiz_watchers_get_every_event_in_order_and_leaderboard_changes(
    stream_stub: Stub, nats_client: NatsClient, stream_settings: Settings, stream_seed: Seed
) -> None:
    quiz_id = await stream_seed(TRIO, version=4)
    subjects = Subjects(stream_settings.nats_prefix)
    watchers = [stream_stub.WatchQuiz(stream_pb2.WatchQuizRequest(quiz_id=quiz_id)) for _ in "abc"]

    for call in watchers:
        opening = await next_event(call)
        assert opening.WhichOneof("kind") == "leaderboard_changed"
        assert opening.sequence == 0
        assert opening.leaderboard_changed.version == 4
        assert [e.player_id for e in opening.leaderboard_changed.entries] == ["p1", "p2", "p3"]

    sequences: list[int] = []
    for (msg_id, event), kind in zip(lifecycle(quiz_id), LIFECYCLE_KINDS, strict=True):
        sequence = await publish_event(nats_client, subjects, event, msg_id)
        sequences.append(sequence)
        for call in watchers:
            received = await next_event(call)
            assert received.WhichOneof("kind") == kind
            assert received.sequence == sequence
            assert received.quiz_id == quiz_id
        if kind == "question_opened":
            board = common_pb2.LeaderboardSnapshot(
                quiz_id=quiz_id, version=5, question_index=0, total_players=3
            )
            await publish_snapshot(nats_client, subjects, board)
            for call in watchers:
                changed = await next_event(call)
                assert changed.WhichOneof("kind") == "leaderboard_changed"
                assert changed.leaderboard_changed.version == 5
                # Leaderboard changes carry the sequence of the last lifecycle event.
                assert changed.sequence == sequence

    assert sequences == sorted(set(sequences))
    for call in watchers:
        call.cancel()


async def test_resumed_watcher_gets_only_later_events_then_the_leaderboard(
    stream_stub: Stub, nats_client: NatsClient, stream_settings: Settings, stream_seed: Seed
) -> None:
    quiz_id = await stream_seed(TRIO, version=9)
    subjects = Subjects(stream_settings.nats_prefix)
    sequences = [
        await publish_event(nats_client, subjects, event, msg_id)
        for msg_id, event in lifecycle(quiz_id)
    ]
    # A duplicate announcement (another replica, a retry) is stored once.
    await publish_event(nats_client, subjects, lifecycle(quiz_id)[3][1], f"{quiz_id}:closed")

    call = stream_stub.WatchQuiz(
        stream_pb2.WatchQuizRequest(quiz_id=quiz_id, after_sequence=sequences[0])
    )
    received = [await next_event(call) for _ in range(4)]
    call.cancel()

    assert [e.WhichOneof("kind") for e in received] == [
        *LIFECYCLE_KINDS[1:],
        "leaderboard_changed",
    ]
    assert [e.sequence for e in received] == [*sequences[1:], sequences[-1]]
    assert received[-1].leaderboard_changed.version == 9


async def test_player_watching_the_leaderboard_also_gets_their_own_standing(
    stream_stub: Stub,
    nats_client: NatsClient,
    redis_client: Redis,
    stream_settings: Settings,
    stream_seed: Seed,
    stream_issuer: TokenIssuer,
) -> None:
    quiz_id = await stream_seed(TRIO, version=2)
    subjects = Subjects(stream_settings.nats_prefix)
    token = stream_issuer.issue(Role.PLAYER, "p2", 600, quiz_id=quiz_id)
    player = stream_stub.WatchLeaderboard(
        stream_pb2.WatchLeaderboardRequest(quiz_id=quiz_id, access_token=token)
    )
    spectator = stream_stub.WatchLeaderboard(stream_pb2.WatchLeaderboardRequest(quiz_id=quiz_id))

    first = await next_board(player)
    watching = await next_board(spectator)

    assert first.snapshot.version == 2
    assert [e.player_id for e in first.snapshot.entries] == ["p1", "p2", "p3"]
    assert (first.you.player_id, first.you.nickname, first.you.rank, first.you.score) == (
        "p2",
        "Bo",
        2,
        200,
    )
    assert watching.snapshot == first.snapshot
    assert not watching.HasField("you")

    # p2 overtakes p1; the leaderboard service would publish this snapshot.
    keys = QuizKeys(stream_settings.key_prefix, quiz_id)
    await redis_client.zadd(keys.board, {"p2": pack(500, 4_000)})
    await redis_client.hincrby(keys.state, "version", 1)
    pipe = PipelinedRedis(RedisAddress.parse(stream_settings.redis_url))
    try:
        snapshot = await LiveBoard(pipe, stream_settings.key_prefix).snapshot(quiz_id, 10)
    finally:
        await pipe.close()
    assert snapshot is not None
    await publish_snapshot(nats_client, subjects, snapshot)

    second = await next_board(player)
    assert second.snapshot.version == 3
    assert second.snapshot.entries[0].player_id == "p2"
    assert (second.you.rank, second.you.score) == (1, 500)
    assert (await next_board(spectator)).snapshot == second.snapshot
    player.cancel()
    spectator.cancel()


async def test_stale_and_duplicate_snapshots_are_not_sent(
    stream_stub: Stub, nats_client: NatsClient, stream_settings: Settings, stream_seed: Seed
) -> None:
    quiz_id = await stream_seed(TRIO, version=5)
    subjects = Subjects(stream_settings.nats_prefix)
    call = stream_stub.WatchLeaderboard(stream_pb2.WatchLeaderboardRequest(quiz_id=quiz_id))
    opening = (await next_board(call)).snapshot
    assert (opening.version, opening.question_index) == (5, -1)

    # (version, question, final) as several leaderboard replicas might publish them,
    # and whether it is ahead of everything sent before: every change steps the
    # version (a question opening too), so the version alone decides.
    published = [
        ((4, -1, False), False),
        ((5, -1, False), False),
        ((6, -1, False), True),
        ((6, -1, False), False),
        ((7, 0, False), True),  # a question opened: a new version
        ((6, 0, True), False),
        ((8, 0, True), True),
    ]
    for (version, question, is_final), is_news in published:
        snapshot = common_pb2.LeaderboardSnapshot(
            quiz_id=quiz_id, version=version, question_index=question, is_final=is_final
        )
        await publish_snapshot(nats_client, subjects, snapshot)
        if is_news:
            assert (await next_board(call)).snapshot == snapshot
    call.cancel()


async def test_quiet_streams_get_heartbeats(stream_stub: Stub, stream_seed: Seed) -> None:
    quiz_id = await stream_seed(TRIO)
    board = stream_stub.WatchLeaderboard(stream_pb2.WatchLeaderboardRequest(quiz_id=quiz_id))
    events = stream_stub.WatchQuiz(stream_pb2.WatchQuizRequest(quiz_id=quiz_id))
    await next_board(board)
    await next_event(events)

    async with asyncio.timeout(3 * HEARTBEAT_SECONDS):
        beat = await board.read()
        tick = await events.read()

    # One shape on both streams: {"heartbeat": true} and nothing else.
    assert beat == stream_pb2.WatchLeaderboardResponse(heartbeat=True)
    assert tick == stream_pb2.WatchQuizResponse(heartbeat=True)
    board.cancel()
    events.cancel()


@pytest.mark.parametrize("rpc", ["WatchLeaderboard", "WatchQuiz"])
async def test_unknown_quiz_is_not_found(stream_stub: Stub, rpc: str) -> None:
    call = (
        stream_stub.WatchLeaderboard(stream_pb2.WatchLeaderboardRequest(quiz_id="NOSUCHQUIZ"))
        if rpc == "WatchLeaderboard"
        else stream_stub.WatchQuiz(stream_pb2.WatchQuizRequest(quiz_id="NOSUCHQUIZ"))
    )

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call.read()

    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    assert refused.value.details() == "quiz NOSUCHQUIZ not found"


async def test_bad_token_is_unauthenticated(stream_stub: Stub, stream_seed: Seed) -> None:
    quiz_id = await stream_seed(TRIO)
    in_request = stream_stub.WatchLeaderboard(
        stream_pb2.WatchLeaderboardRequest(quiz_id=quiz_id, access_token="not-a-jwt")
    )
    in_header = stream_stub.WatchQuiz(
        stream_pb2.WatchQuizRequest(quiz_id=quiz_id),
        metadata=(("authorization", "Bearer not-a-jwt"),),
    )

    for call in (in_request, in_header):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call.read()
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_negative_after_sequence_is_invalid(stream_stub: Stub, stream_seed: Seed) -> None:
    quiz_id = await stream_seed(TRIO)
    call = stream_stub.WatchQuiz(stream_pb2.WatchQuizRequest(quiz_id=quiz_id, after_sequence=-1))

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call.read()

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_hub_lives_while_a_quiz_has_watchers(
    stream_app: ServiceApp, stream_stub: Stub, stream_seed: Seed
) -> None:
    hubs = hubs_of(stream_app)
    before = hubs.active
    quiz_id = await stream_seed(TRIO)
    first = stream_stub.WatchQuiz(stream_pb2.WatchQuizRequest(quiz_id=quiz_id))
    second = stream_stub.WatchLeaderboard(stream_pb2.WatchLeaderboardRequest(quiz_id=quiz_id))
    await next_event(first)
    await next_board(second)
    assert hubs.active == before + 1

    first.cancel()
    second.cancel()
    async with asyncio.timeout(2):
        while True:  # the stream's cleanup runs after its cancellation reaches the server
            if hubs.active == before:
                break
            await asyncio.sleep(0.02)


async def test_one_serialization_serves_every_watcher(
    stream_app: ServiceApp, nats_client: NatsClient, stream_settings: Settings, stream_seed: Seed
) -> None:
    hubs = hubs_of(stream_app)
    quiz_id = await stream_seed(TRIO)
    hub = await hubs.acquire(quiz_id)
    watches = [hub.watch_quiz(0) for _ in range(3)]
    spectators = [hub.watch_leaderboard(None) for _ in range(3)]
    try:
        for outboxes in (watches, spectators):
            opening: list[bytes | None] = [w.take() for w in outboxes]
            assert opening[0]
            assert all(message is opening[0] for message in opening)

        msg_id, event = lifecycle(quiz_id)[0]
        await publish_event(nats_client, Subjects(stream_settings.nats_prefix), event, msg_id)
        async with asyncio.timeout(2):
            await asyncio.gather(*(w.wake.wait() for w in watches))

        started: list[bytes | None] = [w.take() for w in watches]
        assert started[0]
        assert stream_pb2.WatchQuizResponse.FromString(started[0]).event.HasField("quiz_started")
        assert all(message is started[0] for message in started)
    finally:
        for watch in [*watches, *spectators]:
            hub.forget(watch)
        await hubs.release(hub)


def board(version: int) -> Frame:
    return board_frame(
        stream_pb2.WatchLeaderboardResponse(
            snapshot=common_pb2.LeaderboardSnapshot(quiz_id="Q", version=version)
        )
    )


def event(sequence: int) -> Frame:
    return quiz_frame(
        stream_pb2.WatchQuizResponse(event=events_pb2.QuizEvent(quiz_id="Q", sequence=sequence))
    )


def test_slow_leaderboard_watcher_skips_to_the_newest_snapshot() -> None:
    watch = LeaderboardWatch(player_id=None)
    newest = board(3)

    for frame in (board(1), board(2), newest):
        watch.offer(frame)

    assert watch.take() is newest.proto
    assert watch.take() is None


class FixedFeed:
    def __init__(self) -> None:
        self.frame = board(9)

    def leaderboard_event(self) -> Frame:
        return self.frame


def test_quiz_watcher_gets_replay_then_live_events_then_the_leaderboard() -> None:
    feed = FixedFeed()
    e1, e2, e3 = event(1), event(2), event(3)
    watch = QuizWatch(feed, replay=[e1, e2], limit=10)
    watch.push_event(e3)

    taken = [watch.take() for _ in range(5)]

    assert taken == [e1.proto, e2.proto, e3.proto, feed.frame.proto, None]


def sse_frame(sent: bytes) -> tuple[str, dict[str, Any]]:
    """The `id:` line and the JSON of one SSE message as Envoy passes it to a browser."""
    frame = stream_pb2.WatchLeaderboardSseResponse.FromString(sent).frame
    assert frame.content_type == "text/event-stream"
    head, data, blank, end = frame.data.decode().split("\n")
    assert (blank, end) == ("", "")
    return head, json.loads(data.removeprefix("data: "))


def test_browsers_get_sse_frames_with_their_resume_id_and_the_transcoders_json() -> None:
    watch = QuizWatch(FixedFeed(), replay=[event(7)], limit=10, sse=True)

    head, body = sse_frame(watch.take() or b"")

    assert head == "id: 7"  # a reconnecting EventSource resumes after it
    assert body == {"event": {"quiz_id": "Q", "sequence": "7"}, "heartbeat": False}


def test_a_players_sse_board_carries_their_own_standing_and_heartbeats_carry_no_id() -> None:
    players = LeaderboardWatch(player_id="p1", sse=True)
    you = Standing(3, 120, StandingHead("p1", 'Zoë "Z"'))
    players.offer(board(5), you)

    head, body = sse_frame(players.take() or b"")
    beat = stream_pb2.WatchLeaderboardSseResponse.FromString(players.heartbeat()).frame.data

    assert head == "id: 5"
    assert body["you"] == {"player_id": "p1", "nickname": 'Zoë "Z"', "rank": 3, "score": 120}
    assert body["snapshot"]["version"] == "5"
    # The same standing over gRPC: the snapshot's bytes and `you`'s, one message.
    grpc_watch = LeaderboardWatch(player_id="p1")
    grpc_watch.offer(board(5), you)
    merged = stream_pb2.WatchLeaderboardResponse.FromString(grpc_watch.take() or b"")
    assert (merged.snapshot.version, merged.you.rank, merged.you.nickname) == (5, 3, 'Zoë "Z"')
    assert beat == b'data: {"heartbeat":true}\n\n'


@pytest.mark.parametrize("rank", [0, 1, 127, 128, 300_000, 2**31 - 1])
@pytest.mark.parametrize("score", [0, 1, 999, 16_384, 2**22 - 1, -5])
def test_a_written_out_standing_is_the_bytes_protobuf_would_write(rank: int, score: int) -> None:
    head = StandingHead("p-42", "Ünïcode 🎉 name")
    you = common_pb2.PlayerStanding(
        player_id="p-42", nickname="Ünïcode 🎉 name", rank=rank, score=score
    )

    standing = Standing(rank, score, head)

    assert standing.proto == stream_pb2.WatchLeaderboardResponse(you=you).SerializeToString()
    assert json.loads(standing.json) == {
        "player_id": "p-42",
        "nickname": "Ünïcode 🎉 name",
        "rank": rank,
        "score": score,
    }


@pytest.mark.parametrize("size", [0, 1, 100, 200, 20_000])
@pytest.mark.parametrize("event_id", [None, 0, 7, 2**40])
def test_a_written_out_sse_frame_is_the_bytes_protobuf_would_write(
    size: int, event_id: int | None
) -> None:
    data = ("é" * size).encode()[:size]
    head = b"data: " if event_id is None else b"id: %d\ndata: " % event_id
    body = httpbody_pb2.HttpBody(content_type=CONTENT_TYPE, data=head + data + b"\n\n")

    assert sse(data, event_id) == stream_pb2.WatchQuizSseResponse(frame=body).SerializeToString()


async def test_quiz_watcher_too_far_behind_is_disconnected() -> None:
    watch = QuizWatch(FixedFeed(), replay=[event(1)], limit=2)
    watch.push_event(event(2))
    watch.push_event(event(3))
    assert watch.ended is None

    watch.push_event(event(4))

    # The stream ends at once instead of sending events with a gap in them.
    with pytest.raises(ResourceExhausted, match="after_sequence"):
        async for _ in deliver(watch, heartbeat_seconds=1.0):
            pass


async def test_stopping_the_server_ends_open_streams_promptly(
    stream_settings: Settings, stream_seed: Seed
) -> None:
    app = await create_server(stream_settings)
    await app.start()
    quiz_id = await stream_seed(TRIO)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        stub = stream_pb2_grpc.StreamServiceStub(channel)
        events = stub.WatchQuiz(stream_pb2.WatchQuizRequest(quiz_id=quiz_id))
        board = stub.WatchLeaderboard(stream_pb2.WatchLeaderboardRequest(quiz_id=quiz_id))
        await next_event(events)
        await next_board(board)

        started = time.monotonic()
        await app.stop(stream_settings.shutdown_grace_seconds)
        elapsed = time.monotonic() - started

        with pytest.raises(grpc.aio.AioRpcError) as events_ended:
            await next_event(events)
        with pytest.raises(grpc.aio.AioRpcError) as board_ended:
            await next_board(board)

    assert events_ended.value.code() == grpc.StatusCode.UNAVAILABLE
    assert board_ended.value.code() == grpc.StatusCode.UNAVAILABLE
    assert elapsed < stream_settings.shutdown_grace_seconds / 2
    assert hubs_of(app).active == 0
