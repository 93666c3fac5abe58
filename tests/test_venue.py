"""A venue: a hall of 1,000 players behind one NAT address joins and watches live
through Envoy with the limits `make run` ships (one stream process), while a flood
from one address, and one player opening too many watches, are refused by name.

Envoy here trusts one proxy hop, so that the hall, the flood and the neighbours are
addresses of their own (X-Forwarded-For); the limits are the shipped defaults.
The 2,000 watches are native gRPC through Envoy over a few HTTP/2 connections (light
on this machine's two cores; Envoy admits at most 1,024 streams on one downstream
connection, and real phones have a connection each); SSE watches are keyed the same
way (tests/gateway/test_rate_limits.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from quizmesh.quiz.v1 import quiz_pb2
from quizmesh.stream.v1 import stream_pb2, stream_pb2_grpc

from devstack.gateway import EnvoyProcess, GatewaySettings, local_gateway, write_envoy_config
from services.mesh.config import CommonSettings
from services.stream.config import Settings as StreamSettings
from tests.stack import Backends, Stack, bearer, running_stack

PLAYERS = 1_000
HALL = "203.0.113.10"
FLOOD = "198.51.100.66"
# Joins in flight at once from the hall (its phones), over this many connections.
JOINING_AT_ONCE = 32
JOIN_DEADLINE_SECONDS = 30.0
# The hall's watches share this many HTTP/2 connections to Envoy.
WATCH_CONNECTIONS = 4
SHIPPED = GatewaySettings(upstreams={})
PER_SUBJECT = CommonSettings().max_streams_per_subject

T = TypeVar("T")

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
async def venue(own_backends: Backends) -> AsyncIterator[Stack]:
    """The four services with their shipped limits (one stream process)."""
    async with running_stack(own_backends) as stack:
        yield stack


@pytest.fixture(scope="module")
async def gateway(
    venue: Stack, own_backends: Backends, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[EnvoyProcess]:
    folder: Path = tmp_path_factory.mktemp("venue-envoy")
    settings = local_gateway(
        {name: f"127.0.0.1:{venue.port(name)}" for name in venue.apps},
        own_backends.jwks_file,
        xff_num_trusted_hops=1,
    )
    config = write_envoy_config(folder / "envoy.yaml", settings)
    async with EnvoyProcess(config, log_file=folder / "envoy.log") as envoy:
        yield envoy


@pytest.fixture(scope="module")
async def http(gateway: EnvoyProcess) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=JOINING_AT_ONCE * 2)
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30, limits=limits) as client:
        yield client


@pytest.fixture(scope="module")
async def channels(gateway: EnvoyProcess) -> AsyncIterator[list[grpc.aio.Channel]]:
    """Channels with a connection each (gRPC shares one between equal channels
    unless each keeps its own subchannel pool)."""
    async with contextlib.AsyncExitStack() as opened:
        yield [
            await opened.enter_async_context(
                grpc.aio.insecure_channel(
                    f"127.0.0.1:{gateway.port}", options=[("grpc.use_local_subchannel_pool", 1)]
                )
            )
            for _ in range(WATCH_CONNECTIONS)
        ]


async def new_quiz(stack: Stack, title: str) -> str:
    created = await stack.quiz.CreateQuiz(
        quiz_pb2.CreateQuizRequest(
            title=title,
            questions=[quiz_pb2.QuestionSpec(text="Q", choices=["a", "b"], correct_choice=0)],
        ),
        metadata=bearer(stack.host_token()),
    )
    return str(created.quiz.quiz_id)


async def at_most(count: int, jobs: list[Callable[[], Awaitable[T]]]) -> list[T]:
    """Runs `jobs` with at most `count` in flight; their results in order."""
    gate = asyncio.Semaphore(count)

    async def run(job: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await job()

    return await asyncio.gather(*(run(job) for job in jobs))


def join(http: httpx.AsyncClient, quiz_id: str, nickname: str, client: str) -> Any:
    return lambda: http.post(
        f"/v1/quizzes/{quiz_id}:join",
        json={"nickname": nickname},
        headers={"x-forwarded-for": client},
    )


async def rate_limited_total(gateway: EnvoyProcess) -> int:
    """Requests any local rate limit of this Envoy refused."""
    async with httpx.AsyncClient(base_url=gateway.admin_url) as admin:
        stats = (
            await admin.get("/stats", params={"filter": r"http_local_rate_limit\.rate_limited"})
        ).text
    return sum(int(line.rsplit(" ", 1)[1]) for line in stats.splitlines() if line.strip())


async def first_messages(
    stub: stream_pb2_grpc.StreamServiceAsyncStub, quiz_id: str, token: str
) -> tuple[Any, Any]:
    """A player's two watches, both open; the leaderboard's past its first message
    (None when that was no snapshot)."""
    metadata = (("x-forwarded-for", HALL), *bearer(token))
    events = stub.WatchQuiz(stream_pb2.WatchQuizRequest(quiz_id=quiz_id), metadata=metadata)
    board = stub.WatchLeaderboard(
        stream_pb2.WatchLeaderboardRequest(quiz_id=quiz_id), metadata=metadata
    )
    first_board = await board.read()
    assert isinstance(first_board, stream_pb2.WatchLeaderboardResponse)
    return events, board if first_board.HasField("snapshot") else None


async def active_streams(stack: Stack) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(stack.metrics_url("stream"))).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("quizmesh_active_streams{")
    )


async def test_a_hall_of_1000_behind_one_address_joins_within_30_s_and_all_watch_live(
    venue: Stack, gateway: EnvoyProcess, http: httpx.AsyncClient, channels: list[grpc.aio.Channel]
) -> None:
    quiz_id = await new_quiz(venue, "Hall")
    refused_before = await rate_limited_total(gateway)

    started = time.monotonic()
    joined = await at_most(
        JOINING_AT_ONCE, [join(http, quiz_id, f"player {i}", HALL) for i in range(PLAYERS)]
    )
    join_seconds = time.monotonic() - started

    assert sorted({r.status_code for r in joined}) == [200], {r.text for r in joined}
    assert join_seconds < JOIN_DEADLINE_SECONDS
    tokens = [r.json()["player_token"] for r in joined]

    stubs = [stream_pb2_grpc.StreamServiceStub(channel) for channel in channels]
    started = time.monotonic()
    watches = await at_most(
        200,
        [
            functools.partial(first_messages, stubs[i % len(stubs)], quiz_id, token)
            for i, token in enumerate(tokens)
        ],
    )
    boards_seconds = time.monotonic() - started
    try:
        assert all(board is not None for _, board in watches)  # each had a snapshot
        assert await active_streams(venue) == 2 * PLAYERS
        # Live: the host starts the quiz, and every player's event stream says so.
        await venue.quiz.StartQuiz(
            quiz_pb2.StartQuizRequest(quiz_id=quiz_id), metadata=bearer(venue.host_token())
        )

        async def started_event(events: Any) -> bool:
            while True:
                reply = await events.read()
                if reply.HasField("event") and reply.event.HasField("quiz_started"):
                    return True

        began = time.monotonic()
        live = await asyncio.wait_for(
            asyncio.gather(*(started_event(events) for events, _ in watches)), timeout=60
        )
        live_seconds = time.monotonic() - began
    finally:
        for events, board in watches:
            events.cancel()
            if board is not None:
                board.cancel()

    assert live == [True] * PLAYERS
    assert await rate_limited_total(gateway) == refused_before  # no 429 anywhere
    print(
        f"\nhall: {PLAYERS} joins in {join_seconds:.1f} s; {2 * PLAYERS} watches open with "
        f"their first snapshot in {boards_seconds:.1f} s; QuizStarted on every event "
        f"stream {live_seconds:.2f} s after StartQuiz"
    )


async def test_a_join_flood_from_one_address_is_refused_past_its_burst(
    venue: Stack, http: httpx.AsyncClient
) -> None:
    quiz_id = await new_quiz(venue, "Flooded")
    attempts = 3 * SHIPPED.join_limit.burst
    per_second = SHIPPED.join_limit.refill / SHIPPED.join_limit.every_seconds

    started = time.monotonic()
    answers = await at_most(64, [join(http, quiz_id, f"bot {i}", FLOOD) for i in range(attempts)])
    seconds = time.monotonic() - started
    neighbour = await join(http, quiz_id, "a neighbour", "198.51.100.67")()

    accepted = [r for r in answers if r.status_code == 200]
    refused = [r for r in answers if r.status_code != 200]
    # The burst, and what the bucket refilled while the flood lasted.
    assert (
        SHIPPED.join_limit.burst
        <= len(accepted)
        <= SHIPPED.join_limit.burst + per_second * (seconds + 1)
    )
    assert {r.status_code for r in refused} == {429}
    body = refused[-1].json()
    assert body["code"] == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert body["message"] == (
        "too many requests (joins: 1000 at once, then 50/s per client address, "
        "5000 at once, then 250/s per quiz); retry after the seconds in the Retry-After header"
    )
    assert body["details"] == [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "RATE_LIMITED",
            "domain": "quizmesh",
        }
    ]
    assert refused[-1].headers["retry-after"] == "1"
    assert neighbour.status_code == 200
    print(
        f"\nflood: {attempts} joins from one address in {seconds:.1f} s "
        f"({attempts / seconds:.0f}/s): {len(accepted)} accepted, {len(refused)} refused 429"
    )


def too_many_watches(error: grpc.aio.AioRpcError) -> tuple[str, str]:
    """The refusal's message and its ErrorInfo reason."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return status.message, info.reason


async def test_one_player_holds_at_most_the_per_token_cap_of_watches(
    venue: Stack, http: httpx.AsyncClient, channels: list[grpc.aio.Channel]
) -> None:
    quiz_id = await new_quiz(venue, "Tabs")
    me, classmate = [
        (await join(http, quiz_id, name, HALL)()).json() for name in ("me", "my classmate")
    ]
    stub = stream_pb2_grpc.StreamServiceStub(channels[0])
    request = stream_pb2.WatchLeaderboardRequest(quiz_id=quiz_id)

    async def watch(token: str) -> Any:
        call = stub.WatchLeaderboard(request, metadata=(("x-forwarded-for", HALL), *bearer(token)))
        await call.read()
        return call

    async with contextlib.AsyncExitStack() as held:
        for _ in range(PER_SUBJECT):
            held.callback((await watch(me["player_token"])).cancel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await watch(me["player_token"])
        sse_refused = await http.get(
            f"/v1/quizzes/{quiz_id}/events:watch",
            params={"access_token": me["player_token"]},
            headers={"x-forwarded-for": HALL},
        )
        held.callback((await watch(classmate["player_token"])).cancel)

    message = (
        f"too many open watches for token subject {me['player_id']} "
        f"(at most {PER_SUBJECT}); close one, then retry"
    )
    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert too_many_watches(refused.value) == (message, "TOO_MANY_WATCHES")
    assert sse_refused.status_code == 429
    assert sse_refused.json()["message"] == message
    assert sse_refused.json()["details"][0]["reason"] == "TOO_MANY_WATCHES"


async def test_a_forged_token_in_a_players_name_takes_none_of_their_watches(
    venue: Stack, http: httpx.AsyncClient
) -> None:
    """The cap reads the subject before the handler verifies the token: a forged one
    is refused at once and leaves the player's slots alone (directly at the service;
    Envoy refuses it at the edge already)."""
    quiz_id = await new_quiz(venue, "Forged")
    me = (await join(http, quiz_id, "me", HALL)()).json()
    header, payload, _ = me["player_token"].split(".")
    forged = f"{header}.{payload}.AAAA"
    request = stream_pb2.WatchLeaderboardRequest(quiz_id=quiz_id)

    async with contextlib.AsyncExitStack() as held:
        for _ in range(PER_SUBJECT - 1):
            call = venue.stream.WatchLeaderboard(request, metadata=bearer(me["player_token"]))
            await call.read()
            held.callback(call.cancel)
        for _ in range(3):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await venue.stream.WatchLeaderboard(request, metadata=bearer(forged)).read()
            assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
        last = venue.stream.WatchLeaderboard(request, metadata=bearer(me["player_token"]))
        first = await last.read()
        assert isinstance(first, stream_pb2.WatchLeaderboardResponse)
        assert first.HasField("snapshot")
        last.cancel()


def test_the_shipped_limits_fit_a_hall_of_1000() -> None:
    """The arithmetic behind the hall test, on the defaults `make run` uses."""
    stream = StreamSettings()

    assert SHIPPED.join_limit.burst >= PLAYERS
    assert SHIPPED.quiz_join_limit.burst >= PLAYERS
    assert stream.max_streams_per_subject >= 2  # WatchQuiz and WatchLeaderboard
    assert stream.max_streams_per_client >= PLAYERS  # a hall of spectators, no tokens
