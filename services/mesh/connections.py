"""The connections most services open: Redis and NATS with JetStream."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster

from services.mesh import messaging
from services.mesh.config import CommonSettings, RedisNodes
from services.mesh.health import Check

# A redis-py client of one server or of a Redis Cluster: both take the same commands
# (the cluster client routes each key to its node and follows MOVED/ASK).
LiveRedis = Redis | RedisCluster


def redis_client(url: str, max_connections: int | None = None, **options: Any) -> LiveRedis:
    """A redis-py client for QUIZMESH_REDIS_URL (services/mesh/config.py). With
    `max_connections`, a single server's callers wait for a free connection instead
    of failing at the cap; a cluster client has that many per node and fails beyond."""
    nodes = RedisNodes.parse(url)
    if nodes.cluster:
        startup = [ClusterNode(host, port) for host, port in nodes.seeds]
        if max_connections is not None:
            options["max_connections"] = max_connections
        return RedisCluster.from_url(nodes.url, startup_nodes=startup, **options)
    if max_connections is None:
        return Redis.from_url(url, **options)
    pool = BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=5, **options
    )
    return Redis(connection_pool=pool)


@dataclass
class Connections:
    redis: LiveRedis
    nc: NatsClient
    js: JetStreamContext
    subjects: messaging.Subjects

    @classmethod
    async def open(cls, settings: CommonSettings, name: str) -> Connections:
        """Connects, and makes sure our JetStream streams exist (idempotent)."""
        redis = redis_client(settings.redis_url, max_connections=256, decode_responses=True)
        nc = await messaging.connect(settings.nats_url, name=name)
        js = nc.jetstream()
        subjects = messaging.Subjects(settings.nats_prefix)
        await messaging.ensure_streams(js, subjects, settings.nats_stream_replicas)
        return cls(redis, nc, js, subjects)

    def checks(self) -> dict[str, Check]:
        """Health checks: the service is SERVING only while both answer."""
        return {"redis": self._ping_redis, "nats": messaging.connected(self.nc)}

    async def _ping_redis(self) -> object:
        if isinstance(self.redis, RedisCluster):
            # The primaries serve every call; a replica down changes nothing for us.
            return await self.redis.ping(target_nodes=RedisCluster.PRIMARIES)
        return await self.redis.ping()

    async def close(self) -> None:
        try:
            await messaging.close(self.nc)
        finally:
            await self.redis.aclose()
