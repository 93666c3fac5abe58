"""Attempts counted in Redis, so every replica of the quiz service sees the same
counts: sign-ups per client address, failed sign-ins per email and per address.

A fixed window per key: the first attempt starts it, the key expires with it.
Keys hold a hash of what they count, never an email or address in the clear."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from services.mesh.connections import LiveRedis
from services.mesh.errors import Reason, ResourceExhausted


@dataclass(frozen=True, slots=True)
class Limit:
    kind: str  # "sign-up", ...: part of the key and of the refusal's message
    per: str  # what is counted, for the message: "per client address"
    attempts: int
    window_seconds: int


class Attempts:
    def __init__(self, redis: LiveRedis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    def _key(self, limit: Limit, who: str) -> str:
        digest = hashlib.sha256(who.encode()).hexdigest()[:32]
        return f"{self._prefix}attempts:{limit.kind}:{digest}"

    async def check(self, limit: Limit, who: str) -> None:
        """RESOURCE_EXHAUSTED when `who` has used up `limit` in this window."""
        key = self._key(limit, who)
        count = await self._redis.get(key)
        if count is not None and int(count) >= limit.attempts:
            ttl = await self._redis.ttl(key)
            wait = ttl if ttl > 0 else limit.window_seconds
            raise ResourceExhausted(
                f"too many {limit.kind} attempts {limit.per} (at most {limit.attempts} "
                f"per {limit.window_seconds // 60} minutes); try again in {wait} s",
                Reason.ERROR_REASON_RATE_LIMITED,
            )

    async def count(self, limit: Limit, who: str) -> None:
        key = self._key(limit, who)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, limit.window_seconds, nx=True)
            await pipe.execute()
