"""Watch streams: a cap per client, heartbeats that keep idle streams open behind
Envoy, and nothing left behind when clients go away.

Envoy cuts a stream that is silent for `stream_idle_timeout`; the stream service
sends a heartbeat after every quiet `heartbeat_seconds`. Here both are scaled down
(0.5 s heartbeats, a 2 s idle timeout) so that a stream idle for many idle timeouts
is seen to stay open, and one whose heartbeats are slower than the timeout is seen
to be cut: the same arithmetic as the shipped 15 s / 60 s settings, in seconds.
The shipped settings themselves are checked against it below.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml
from quizmesh.quiz.v1 import quiz_pb2
from quizmesh.stream.v1 import stream_pb2, stream_pb2_grpc

from devstack.gateway import (
    EnvoyProcess,
    GatewaySettings,
    local_gateway,
    render_envoy_config,
    write_envoy_config,
)
from services.stream.config import Settings as StreamSettings
from tests.stack import Backends, Stack, bearer, running_stack, start_service

CAP = 2
HEARTBEAT = 0.5
IDLE_TIMEOUT = 2.0


@pytest.fixture(scope="module")
async def limited(own_backends: Backends) -> AsyncIterator[Stack]:
    """A stack whose stream service allows 2 watches per client, heartbeat 0.5 s."""
    async with running_stack(
        own_backends, max_streams_per_client=CAP, heartbeat_seconds=HEARTBEAT
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
async def quiz_id(limited: Stack) -> str:
    created = await limited.quiz.CreateQuiz(
        quiz_pb2.CreateQuizRequest(
            title="Idle",
            questions=[quiz_pb2.QuestionSpec(text="Q", choices=["a", "b"], correct_choice=0)],
        ),
        metadata=bearer(limited.host_token()),
    )
    return str(created.quiz.quiz_id)


@pytest.fixture
def envoy_for(
    limited: Stack, tmp_path: Path
) -> Callable[[int, float], contextlib.AbstractAsyncContextManager[EnvoyProcess]]:
    """An Envoy in front of the limited stack (with the stream service on the given
    port), with the given idle timeout on streaming routes."""

    @contextlib.asynccontextmanager
    async def start(stream_port: int, idle_timeout: float) -> AsyncIterator[EnvoyProcess]:
        folder = tmp_path / f"envoy-{stream_port}"
        folder.mkdir()
        upstreams = {name: f"127.0.0.1:{limited.port(name)}" for name in limited.apps}
        settings = local_gateway(
            {**upstreams, "stream": f"127.0.0.1:{stream_port}"},
            limited.backends.jwks_file,
            stream_idle_timeout_seconds=idle_timeout,
        )
        config = write_envoy_config(folder / "envoy.yaml", settings)
        async with EnvoyProcess(config, log_file=folder / "envoy.log") as envoy:
            yield envoy

    return start


async def open_watch(
    stack: Stack, quiz_id: str, client: str | None = None
) -> grpc.aio.UnaryStreamCall[
    stream_pb2.WatchLeaderboardRequest, stream_pb2.WatchLeaderboardResponse
]:
    """A native watch that has delivered its first snapshot (so it is counted)."""
    stub = stream_pb2_grpc.StreamServiceStub(stack.channels["stream"])
    metadata = (("x-quizmesh-client", client),) if client else ()
    call = stub.WatchLeaderboard(
        stream_pb2.WatchLeaderboardRequest(quiz_id=quiz_id), metadata=metadata
    )
    await call.read()
    return call


async def active_streams(stack: Stack) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(stack.metrics_url("stream"))).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("quizmesh_active_streams{")
    )


async def eventually(check: Callable[[], Any], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_a_client_holds_at_most_the_cap_of_open_watches(limited: Stack, quiz_id: str) -> None:
    held = [await open_watch(limited, quiz_id) for _ in range(CAP)]

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await open_watch(limited, quiz_id)
    # Another client (as Envoy names it) is not affected.
    neighbour = await open_watch(limited, quiz_id, client="203.0.113.9")

    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refused.value.details() == (
        f"too many open watches from 127.0.0.1 (at most {CAP}); close one, then retry"
    )
    held.pop().cancel()
    neighbour.cancel()

    async def reopened() -> bool:
        try:
            held.append(await open_watch(limited, quiz_id))
        except grpc.aio.AioRpcError:
            return False
        return True

    await eventually(reopened)
    for call in held:
        call.cancel()


async def test_through_envoy_the_cap_is_http_429_and_cannot_be_dodged_by_a_header(
    limited: Stack, quiz_id: str, envoy_for: Any
) -> None:
    async with envoy_for(limited.port("stream"), 60.0) as envoy:
        url = f"{envoy.base_url}/v1/quizzes/{quiz_id}/leaderboard:watch"
        async with contextlib.AsyncExitStack() as streams, httpx.AsyncClient() as client:
            for _ in range(CAP):
                response = await streams.enter_async_context(client.stream("GET", url))
                assert response.status_code == 200
            spoofed = await client.get(url, headers={"x-quizmesh-client": "198.51.100.1"})

        assert spoofed.status_code == 429
        body = spoofed.json()
        assert body["code"] == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
        assert body["message"] == (
            f"too many open watches from 127.0.0.1 (at most {CAP}); close one, then retry"
        )


async def sse_messages(
    envoy: EnvoyProcess, quiz_id: str, seconds: float
) -> tuple[list[dict[str, Any]], bool]:
    """The SSE messages of a watch held for `seconds`, and whether it was still open."""
    url = f"{envoy.base_url}/v1/quizzes/{quiz_id}/leaderboard:watch"
    messages: list[dict[str, Any]] = []
    async with httpx.AsyncClient(timeout=None) as client, client.stream("GET", url) as response:
        assert response.status_code == 200

        async def read() -> None:
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    messages.append(json.loads(line[5:]))  # noqa: PERF401 - kept on a cut

        try:
            await asyncio.wait_for(read(), timeout=seconds)
        except TimeoutError:
            return messages, True
        except httpx.RemoteProtocolError:
            pass  # Envoy's idle cut: the chunked body ends without its last chunk
    return messages, False


async def test_an_idle_watch_stays_open_through_envoy_for_many_idle_timeouts(
    limited: Stack, quiz_id: str, envoy_for: Any
) -> None:
    held_for = 4 * IDLE_TIMEOUT
    async with envoy_for(limited.port("stream"), IDLE_TIMEOUT) as envoy:
        messages, still_open = await sse_messages(envoy, quiz_id, held_for)

    heartbeats = [m for m in messages if m.get("heartbeat")]
    assert still_open
    assert "snapshot" in messages[0]
    assert len(heartbeats) >= held_for / HEARTBEAT - 3


async def test_a_watch_whose_heartbeats_are_slower_than_the_idle_timeout_is_cut(
    limited: Stack, quiz_id: str, envoy_for: Any
) -> None:
    slow = Stack(limited.backends, limited.key_prefix, limited.nats_prefix)
    app = await start_service(slow, "stream", heartbeat_seconds=3 * IDLE_TIMEOUT)
    try:
        async with envoy_for(app.port, IDLE_TIMEOUT) as envoy:
            started = time.monotonic()
            messages, still_open = await sse_messages(envoy, quiz_id, 4 * IDLE_TIMEOUT)
            cut_after = time.monotonic() - started
    finally:
        await app.stop(1.0)
        for channel in slow.channels.values():
            await channel.close()

    assert not still_open
    assert len(messages) == 1  # the first snapshot, then silence until Envoy's cut
    assert IDLE_TIMEOUT <= cut_after < 2 * IDLE_TIMEOUT


async def test_watches_whose_clients_vanish_leave_nothing_behind(
    limited: Stack, quiz_id: str, envoy_for: Any
) -> None:
    async with envoy_for(limited.port("stream"), 60.0) as envoy:
        await eventually(lambda: _equals(active_streams(limited), 0))
        url = f"{envoy.base_url}/v1/quizzes/{quiz_id}/leaderboard:watch"
        client = httpx.AsyncClient(timeout=None)
        sse = client.stream("GET", url)
        response = await sse.__aenter__()
        assert response.status_code == 200
        native = await open_watch(limited, quiz_id)
        await eventually(lambda: _equals(active_streams(limited), 2))

        # The browser tab closes its TCP connection; the native client just goes.
        await client.aclose()
        native.cancel()

        await eventually(lambda: _equals(active_streams(limited), 0))
        # Both quota slots are free again: the cap can be reached anew.
        again = [await open_watch(limited, quiz_id) for _ in range(CAP)]
        for call in again:
            call.cancel()


async def _equals(value: Any, expected: float) -> bool:
    return bool(await value == expected)


def test_the_shipped_settings_keep_idle_streams_open_for_hours() -> None:
    gateway = GatewaySettings(
        upstreams={k: f"{k}:50051" for k in ("quiz", "score", "leaderboard", "stream")}
    )
    heartbeat = StreamSettings().heartbeat_seconds
    config = yaml.safe_load(render_envoy_config(gateway))
    listener = config["static_resources"]["listeners"][0]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    routes = manager["route_config"]["virtual_hosts"][0]["routes"]
    watch_routes = {
        r["match"].get("path"): r["route"] for r in routes if "Watch" in str(r["match"])
    }

    # Several heartbeats fit in one idle timeout, so one late heartbeat is no cut.
    assert gateway.stream_idle_timeout_seconds >= 3 * heartbeat
    assert set(watch_routes) == {
        f"/quizmesh.stream.v1.StreamService/{rpc}"
        for rpc in ("WatchLeaderboard", "WatchQuiz", "WatchLeaderboardSse", "WatchQuizSse")
    }
    for route in watch_routes.values():
        # No overall timeout: only silence ends a watch.
        assert route["timeout"] == "0s"
        assert route["idle_timeout"] == f"{gateway.stream_idle_timeout_seconds:g}s"
        assert "max_stream_duration" not in route
    # Nothing ends a healthy connection either (Envoy's connection idle timeout only
    # counts time without any open stream).
    options = manager.get("common_http_protocol_options", {})
    assert "max_connection_duration" not in options
    assert "max_stream_duration" not in options
    assert "stream_idle_timeout" not in manager  # the route's idle_timeout decides
