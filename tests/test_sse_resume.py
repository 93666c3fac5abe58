"""Server-Sent Events as a plain EventSource uses them: every event frame carries an
`id:` (a WatchQuiz event's sequence, a snapshot's version), and a reconnect that
sends the last one as Last-Event-ID resumes WatchQuiz after it, over HTTP through
Envoy and as gRPC metadata alike. Both streams beat with one shape."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from quizmesh.stream.v1 import stream_pb2, stream_pb2_grpc

from tests.api import HttpApi
from tests.game import REFERENCE_QUIZ, join
from tests.stack import Stack


@dataclass
class Frame:
    id: str | None
    data: dict[str, Any]


async def frames(response: httpx.Response) -> AsyncIterator[Frame]:
    """The SSE frames of a response, as an EventSource parses them."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if "data" in fields:
                yield Frame(fields.get("id"), json.loads(fields["data"]))
            fields = {}
            continue
        name, _, value = line.partition(":")
        fields[name] = value.removeprefix(" ")


async def first_frames(
    http: httpx.AsyncClient, path: str, count: int, headers: dict[str, str] | None = None
) -> list[Frame]:
    got: list[Frame] = []
    async with asyncio.timeout(10), http.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        async for frame in frames(response):
            got.append(frame)
            if len(got) == count:
                break
    return got


@pytest.fixture
async def running_quiz(stack: Stack, http: httpx.AsyncClient) -> str:
    """A started quiz: its events so far are quiz_started and question_opened."""
    api = HttpApi(http)
    host = stack.host_token("alice")
    quiz_id = str((await api.call("CreateQuiz", REFERENCE_QUIZ, host))["quiz"]["quiz_id"])
    await join(api, quiz_id, "ann")
    await api.call("StartQuiz", {"quiz_id": quiz_id}, host)
    return quiz_id


def lifecycle(frames_: list[Frame]) -> list[Frame]:
    return [f for f in frames_ if "leaderboard_changed" not in f.data.get("event", {})]


async def test_every_event_frame_carries_its_sequence_as_id(
    http: httpx.AsyncClient, running_quiz: str
) -> None:
    got = lifecycle(await first_frames(http, f"/v1/quizzes/{running_quiz}/events:watch", 3))

    assert [f.id for f in got] == [f.data["event"]["sequence"] for f in got]
    assert [kind(f) for f in got][:2] == ["quiz_started", "question_opened"]


def kind(frame: Frame) -> str:
    """Which event of the oneof a frame's event is."""
    return str(next(k for k in frame.data["event"] if k not in ("quiz_id", "sequence", "time")))


async def test_a_reconnect_with_last_event_id_resumes_after_it(
    http: httpx.AsyncClient, running_quiz: str
) -> None:
    path = f"/v1/quizzes/{running_quiz}/events:watch"
    started, opened = lifecycle(await first_frames(http, path, 3))[:2]
    assert started.id is not None

    resumed = lifecycle(await first_frames(http, path, 2, {"last-event-id": started.id}))

    assert resumed[0].id == opened.id  # quiz_started is not sent again
    assert "question_opened" in resumed[0].data["event"]


async def test_a_board_snapshot_frame_carries_its_version_as_id(
    http: httpx.AsyncClient, running_quiz: str
) -> None:
    (first,) = await first_frames(http, f"/v1/quizzes/{running_quiz}/leaderboard:watch", 1)

    assert first.id == first.data["snapshot"]["version"]


async def test_a_last_event_id_that_is_no_sequence_is_refused_naming_it(
    http: httpx.AsyncClient, running_quiz: str
) -> None:
    response = await http.get(
        f"/v1/quizzes/{running_quiz}/events:watch", headers={"last-event-id": "yesterday"}
    )

    assert response.status_code == 400
    body = response.json()
    assert "Last-Event-ID" in body["message"]
    assert body["details"][0]["reason"] == "FIELD_INVALID"


async def first_event(
    stack: Stack,
    request: stream_pb2.WatchQuizRequest,
    metadata: tuple[tuple[str, str], ...] = (),
) -> stream_pb2.WatchQuizResponse:
    """The first message of a native gRPC WatchQuiz, which is then cancelled."""
    stub = stream_pb2_grpc.StreamServiceStub(stack.channels["stream"])
    call = stub.WatchQuiz(request, metadata=metadata)
    try:
        reply = await call.read()
    finally:
        call.cancel()
    assert isinstance(reply, stream_pb2.WatchQuizResponse), "the stream ended"
    return reply


async def test_native_grpc_resumes_from_last_event_id_metadata_too(
    stack: Stack, running_quiz: str
) -> None:
    first = await first_event(stack, stream_pb2.WatchQuizRequest(quiz_id=running_quiz))
    assert first.event.HasField("quiz_started")

    reply = await first_event(
        stack,
        stream_pb2.WatchQuizRequest(quiz_id=running_quiz),
        metadata=(("last-event-id", str(first.event.sequence)),),
    )

    assert reply.event.HasField("question_opened")
    assert reply.event.sequence > first.event.sequence


async def test_after_sequence_when_sent_wins_over_last_event_id(
    stack: Stack, running_quiz: str
) -> None:
    first = await first_event(stack, stream_pb2.WatchQuizRequest(quiz_id=running_quiz))

    reply = await first_event(
        stack,
        stream_pb2.WatchQuizRequest(quiz_id=running_quiz, after_sequence=first.event.sequence),
        metadata=(("last-event-id", "0"),),
    )

    assert reply.event.HasField("question_opened")
