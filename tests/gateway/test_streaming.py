"""Server streaming through Envoy: watches as Server-Sent Events over HTTP, as
messages over native gRPC, and spread over Envoy's upstream connections."""

from __future__ import annotations

import asyncio
import json

import grpc
import httpx
from quizmesh.stream.v1 import stream_pb2, stream_pb2_grpc

from services.identity.tokens import Role
from tests.gateway.conftest import (
    QUIZ_ID,
    STREAMS_PER_UPSTREAM_CONNECTION,
    Backend,
    Keys,
    assert_json_error,
)


async def test_watch_streams_server_sent_events_one_by_one_with_the_query_token(
    http: httpx.AsyncClient, backend: Backend, keys: Keys
) -> None:
    token = keys.token("dave", Role.PLAYER)
    backend.second_event.clear()
    url = f"/v1/quizzes/{QUIZ_ID}/events:watch"

    async with http.stream("GET", url, params={"access_token": token}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.aiter_lines()
        # The backend holds the second event back until the first one arrived.
        first = [await asyncio.wait_for(anext(lines), timeout=5) for _ in range(3)]
        backend.second_event.set()
        second = [await asyncio.wait_for(anext(lines), timeout=5) for _ in range(3)]

    # Each frame: its id (the event's sequence, for Last-Event-ID), its JSON, a blank line.
    assert first[0] == "id: 1"
    assert json.loads(first[1].removeprefix("data: "))["event"] == {
        "quiz_id": QUIZ_ID,
        "sequence": "1",  # int64 is a JSON string
        "quiz_started": {"question_count": 2},
    }
    assert second[0] == "id: 2"
    assert json.loads(second[1].removeprefix("data: "))["event"]["quiz_closed"] == {
        "reason": "CLOSE_REASON_HOST"
    }
    assert first[2] == second[2] == ""
    request = backend.last("WatchQuizSse").request
    assert request == stream_pb2.WatchQuizSseRequest(quiz_id=QUIZ_ID, access_token=token)


async def test_watch_with_a_bad_query_token_is_refused_at_the_edge(
    http: httpx.AsyncClient, keys: Keys
) -> None:
    token = keys.stranger.issue(Role.PLAYER, "mallory", 600, quiz_id=QUIZ_ID)

    response = await http.get(f"/v1/quizzes/{QUIZ_ID}/events:watch", params={"access_token": token})

    assert_json_error(response, 401, grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")


async def test_native_grpc_watch_streams_messages(
    channel: grpc.aio.Channel, backend: Backend
) -> None:
    backend.second_event.set()
    stub = stream_pb2_grpc.StreamServiceStub(channel)

    replies = [r async for r in stub.WatchQuiz(stream_pb2.WatchQuizRequest(quiz_id=QUIZ_ID))]

    assert [r.event.sequence for r in replies] == [1, 2]


async def test_many_watches_are_spread_over_several_upstream_connections(
    channel: grpc.aio.Channel, backend: Backend
) -> None:
    """One client connection's watches reach the service over several of Envoy's
    connections, so that SO_REUSEPORT workers (QUIZMESH_PROCESSES) share them."""
    stub = stream_pb2_grpc.StreamServiceStub(channel)
    watches = 3 * STREAMS_PER_UPSTREAM_CONNECTION
    earlier = len(backend.watch_peers)  # other tests' watches
    calls = [
        stub.WatchLeaderboard(stream_pb2.WatchLeaderboardRequest(quiz_id=QUIZ_ID))
        for _ in range(watches)
    ]
    try:
        for call in calls:
            await call.read()  # each watch is open at the service

        peers = backend.watch_peers[earlier:]
        assert len(peers) == watches
        assert len(set(peers)) >= 3, peers
    finally:
        for call in calls:
            call.cancel()
