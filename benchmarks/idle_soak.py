"""Soak: idle watches held open through Envoy for an hour with the shipped settings.

    .venv/bin/python -m benchmarks.idle_soak --minutes 60 --watchers 50

Starts the four services (in this process, on the configured or private Redis/NATS,
SQLite) and an Envoy rendered with the shipped defaults (60 s stream idle timeout,
15 s heartbeats), creates one quiz nobody plays, and opens N SSE watches and N
native gRPC watches through Envoy. After the given time it checks that every watch
is still open and got its heartbeats, then drops all clients and checks that the
stream service and Envoy hold no stream and no connection any more. Prints a table
and a JSON line. (tests/test_stream_limits.py checks the same with scaled-down
times in every test run; this is the full-length run.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
from quizmesh.quiz.v1 import quiz_pb2
from quizmesh.stream.v1 import stream_pb2, stream_pb2_grpc

from benchmarks._stack import run_cleanly
from devstack import infra
from devstack.gateway import EnvoyProcess, local_gateway, write_envoy_config
from services.database.migrate import upgrade
from services.identity.keys import ensure_dev_keys
from services.stream.config import Settings as StreamSettings
from tests.stack import Backends, bearer, running_stack


@dataclass
class Watch:
    kind: str
    messages: int = 0
    heartbeats: int = 0
    ended: str = ""
    last: float = field(default_factory=time.monotonic)


async def sse_watch(client: httpx.AsyncClient, url: str, watch: Watch) -> None:
    try:
        async with client.stream("GET", url) as response:
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    watch.messages += 1
                    watch.heartbeats += '"heartbeat":true' in line.replace(" ", "")
                    watch.last = time.monotonic()
        watch.ended = "closed by the server"
    except (httpx.HTTPError, asyncio.CancelledError) as e:
        watch.ended = watch.ended or type(e).__name__
        if isinstance(e, asyncio.CancelledError):
            raise


async def grpc_watch(
    stub: stream_pb2_grpc.StreamServiceAsyncStub, quiz_id: str, watch: Watch
) -> None:
    try:
        call = stub.WatchLeaderboard(stream_pb2.WatchLeaderboardRequest(quiz_id=quiz_id))
        async for reply in call:
            watch.messages += 1
            watch.heartbeats += reply.heartbeat
            watch.last = time.monotonic()
        watch.ended = "closed by the server"
    except grpc.aio.AioRpcError as e:
        watch.ended = f"{e.code().name}: {e.details()}"


async def active_streams(metrics_url: str) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(metrics_url)).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("quizmesh_active_streams{")
    )


async def envoy_gauge(envoy: EnvoyProcess, name: str) -> int:
    async with httpx.AsyncClient() as client:
        stats = (await client.get(f"{envoy.admin_url}/stats?filter=^{name}$&format=json")).json()
    return sum(int(s.get("value", 0)) for s in stats["stats"])


async def soak(minutes: float, watchers: int) -> dict[str, object]:
    folder = Path(tempfile.mkdtemp(prefix="quizmesh-soak-"))
    ensure_dev_keys(folder / "signing-key.pem", folder / "jwks.json")
    database_url = f"sqlite+aiosqlite:///{folder / 'soak.db'}"
    await upgrade(database_url)
    async with contextlib.AsyncExitStack() as stack:
        backends = Backends(
            redis_url=await stack.enter_async_context(infra.redis_at(infra.DEFAULT_REDIS_URL)),
            nats_url=await stack.enter_async_context(infra.nats_at(infra.DEFAULT_NATS_URL)),
            mysql_server_url="",  # none: the soak keeps its records in SQLite
            database_url=database_url,
            jwks_file=folder / "jwks.json",
            signing_key_file=folder / "signing-key.pem",
        )
        services = await stack.enter_async_context(
            running_stack(backends, max_streams_per_client=4 * watchers)
        )
        gateway = local_gateway(
            {name: f"127.0.0.1:{services.port(name)}" for name in services.apps},
            backends.jwks_file,
        )
        envoy = await stack.enter_async_context(
            EnvoyProcess(write_envoy_config(folder / "envoy.yaml", gateway))
        )
        created = await services.quiz.CreateQuiz(
            quiz_pb2.CreateQuizRequest(
                title="Nobody plays",
                questions=[quiz_pb2.QuestionSpec(text="Q", choices=["a", "b"])],
            ),
            metadata=bearer(services.host_token()),
        )
        quiz_id = created.quiz.quiz_id
        url = f"{envoy.base_url}/v1/quizzes/{quiz_id}/leaderboard:watch"
        client = httpx.AsyncClient(timeout=httpx.Timeout(10, read=None))
        channel = grpc.aio.insecure_channel(envoy.base_url.removeprefix("http://"))
        stub = stream_pb2_grpc.StreamServiceStub(channel)
        watches = [Watch("sse") for _ in range(watchers)] + [Watch("grpc") for _ in range(watchers)]
        tasks = [
            asyncio.create_task(
                sse_watch(client, url, w) if w.kind == "sse" else grpc_watch(stub, quiz_id, w)
            )
            for w in watches
        ]
        started = time.monotonic()
        while time.monotonic() - started < minutes * 60:
            await asyncio.sleep(min(60.0, minutes * 60))
            open_now = sum(not w.ended for w in watches)
            print(f"  {(time.monotonic() - started) / 60:6.1f} min: {open_now} watches open")
        held = time.monotonic() - started
        still_open = sum(not w.ended for w in watches)
        ends = sorted({w.ended for w in watches if w.ended})
        during = {
            "stream_service_active_streams": await active_streams(services.metrics_url("stream")),
            "envoy_downstream_cx_active": await envoy_gauge(
                envoy, "http.public.downstream_cx_active"
            ),
        }

        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.aclose()
        await channel.close()
        await asyncio.sleep(5)  # Envoy notices the closed connections
        after = {
            "stream_service_active_streams": await active_streams(services.metrics_url("stream")),
            "envoy_downstream_cx_active": await envoy_gauge(
                envoy, "http.public.downstream_cx_active"
            ),
        }
        heartbeat = StreamSettings().heartbeat_seconds
        return {
            "benchmark": "idle_soak",
            "minutes_held": round(held / 60, 1),
            "watches": len(watches),
            "still_open": still_open,
            "ended": ends,
            "heartbeat_seconds": heartbeat,
            "stream_idle_timeout_seconds": gateway.stream_idle_timeout_seconds,
            "heartbeats_min": min(w.heartbeats for w in watches),
            "heartbeats_expected": int(held // heartbeat),
            "during": during,
            "after_clients_left": after,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--watchers", type=int, default=50, help="SSE watches (and as many gRPC)")
    args = parser.parse_args()
    result = run_cleanly(soak(args.minutes, args.watchers))
    print(f"held {result['minutes_held']} min: {result['still_open']}/{result['watches']} open")
    print(
        f"heartbeats per watch: min {result['heartbeats_min']}, "
        f"expected ~{result['heartbeats_expected']}"
    )
    print(f"during: {result['during']}")
    print(f"after the clients left: {result['after_clients_left']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
