"""Host passwords: Argon2id hashes (argon2-cffi), computed off the event loop."""

from __future__ import annotations

import asyncio
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# OWASP's minimum for Argon2id: 19 MiB, 2 passes, 1 lane. ~37 ms of one core per
# hash on the 2-core dev machine (the library's default, 64 MiB x 3 x 4 lanes: 233 ms),
# so a sign-in storm costs cores, not minutes. Hashes carry their parameters:
# raising these later still verifies old ones, and sign-in rehashes them.
HASHER = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)
# Hashes at once per process; more wait their turn (argon2 releases the GIL, so
# these run on threads beside the event loop).
CONCURRENT_HASHES = 2


class Passwords:
    def __init__(self, hasher: PasswordHasher = HASHER) -> None:
        self._hasher = hasher
        self._slots = asyncio.Semaphore(CONCURRENT_HASHES)
        # Verified when the email is unknown, so that a refusal costs the same time
        # either way and does not tell which emails have accounts.
        self._stand_in = hasher.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> bool:
        """Whether `password` is the one `stored` was made from (False for None)."""
        async with self._slots:
            matches = await asyncio.to_thread(self._matches, stored or self._stand_in, password)
        return matches and stored is not None

    def needs_rehash(self, stored: str) -> bool:
        return self._hasher.check_needs_rehash(stored)

    def _matches(self, stored: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False
