"""On a NATS cluster with QUIZMESH_NATS_STREAM_REPLICAS=3, JetStream keeps three
copies of every accepted answer and lifecycle event: losing a NATS server, even the
one leading the stream, loses none of them. These tests own a cluster of three."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import nats
import pytest

from devstack import infra
from services.mesh.config import CommonSettings
from services.mesh.connections import Connections
from services.mesh.messaging import Subjects, ensure_streams
from tests.stack import Backends

T = TypeVar("T")


@pytest.fixture
async def cluster() -> AsyncIterator[list[infra.NatsServer]]:
    servers = await infra.start_nats_cluster(3)
    try:
        yield servers
    finally:
        await asyncio.gather(*(server.close() for server in servers))


async def eventually(attempt: Callable[[], Awaitable[T]], seconds: float = 20.0) -> T:
    """What `attempt` returns once JetStream has (re-)elected the leaders it needs."""
    for _ in range(int(seconds / 0.25)):
        try:
            return await attempt()
        except Exception:
            await asyncio.sleep(0.25)
    return await attempt()


async def test_streams_keep_three_copies_and_an_answer_survives_the_loss_of_its_leader(
    cluster: list[infra.NatsServer], backends: Backends
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    subjects = Subjects(prefix)
    urls = ",".join(server.url for server in cluster)
    settings = CommonSettings(
        environment="test",
        redis_url=backends.redis_url,
        nats_url=urls,
        nats_prefix=prefix,
        nats_stream_replicas=3,
    )
    # Streams made with one copy (an earlier deployment) are scaled up on start.
    first = await nats.connect(urls.split(","))
    try:
        await eventually(lambda: ensure_streams(first.jetstream(), subjects, replicas=1))
    finally:
        await first.close()

    conn = await eventually(lambda: Connections.open(settings, "test"))
    try:
        # Retried as the score service does (same message id: stored once), while the
        # streams move to three copies.
        ack = await eventually(
            lambda: conn.js.publish(
                subjects.answers("QUIZ1"),
                b"an accepted answer",
                headers={"Nats-Msg-Id": "QUIZ1:0:p1"},
            )
        )
        info = await conn.js.stream_info(subjects.answers_stream)
        events = await conn.js.stream_info(subjects.events_stream)
    finally:
        await conn.close()
    assert info.cluster is not None
    assert info.cluster.leader is not None
    leader = info.cluster.leader
    copies = sorted([leader, *(str(peer.name) for peer in info.cluster.replicas or [])])
    await cluster[int(leader.removeprefix("n"))].kill()

    survivors = [server.url for server in cluster if server.running]
    nc = await nats.connect(survivors)
    try:
        js = nc.jetstream()
        kept = await eventually(
            lambda: js.get_last_msg(subjects.answers_stream, subjects.answers("QUIZ1"))
        )
        new_leader = (await js.stream_info(subjects.answers_stream)).cluster
    finally:
        await nc.close()

    assert info.config.num_replicas == events.config.num_replicas == 3
    assert copies == ["n0", "n1", "n2"]
    assert (kept.seq, kept.data) == (ack.seq, b"an accepted answer")
    assert new_leader is not None
    assert new_leader.leader not in (None, leader)
