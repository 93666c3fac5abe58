"""The connections most services open: Redis and NATS with JetStream."""

from __future__ import annotations

from dataclasses import dataclass

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from redis.asyncio import BlockingConnectionPool, Redis

from services.mesh import messaging
from services.mesh.config import CommonSettings
from services.mesh.health import Check


@dataclass
class Connections:
    redis: Redis
    nc: NatsClient
    js: JetStreamContext
    subjects: messaging.Subjects

    @classmethod
    async def open(cls, settings: CommonSettings, name: str) -> Connections:
        """Connects, and makes sure our JetStream streams exist (idempotent)."""
        # Callers wait for a free connection instead of failing at the pool's cap.
        pool = BlockingConnectionPool.from_url(
            settings.redis_url, decode_responses=True, max_connections=256, timeout=5
        )
        redis = Redis(connection_pool=pool)
        nc = await messaging.connect(settings.nats_url, name=name)
        js = nc.jetstream()
        subjects = messaging.Subjects(settings.nats_prefix)
        await messaging.ensure_streams(js, subjects, settings.nats_stream_replicas)
        return cls(redis, nc, js, subjects)

    def checks(self) -> dict[str, Check]:
        """Health checks: the service is SERVING only while both answer."""
        return {"redis": self.redis.ping, "nats": messaging.connected(self.nc)}

    async def close(self) -> None:
        try:
            await messaging.close(self.nc)
        finally:
            await self.redis.aclose()
