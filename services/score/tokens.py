"""Verified player tokens, remembered until they expire.

An ES256 signature check costs more server CPU than all the rest of a SubmitAnswer
but its own gRPC handling, and a player sends the same token with every answer.
A token is the same bytes each time, so once its signature, issuer and audience
have been checked, only its expiry can change the verdict; that is checked on
every call. Only valid tokens are remembered, so a flood of bad ones costs what it
did before and cannot evict much.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from services.identity.tokens import Caller, TokenVerifier, bearer_token
from services.mesh.context import Context


class KnownTokens:
    def __init__(
        self,
        verifier: TokenVerifier,
        capacity: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.verifier = verifier
        self.capacity = capacity
        self.clock = clock
        # token -> (caller, expiry in epoch seconds); insertion order = eviction order
        self._known: dict[str, tuple[Caller, float]] = {}

    def caller(self, context: Context) -> Caller:
        """The verified caller of an RPC; UNAUTHENTICATED as TokenVerifier says."""
        token = bearer_token(context.invocation_metadata() or ())
        if not token:
            return self.verifier.caller(context)  # raises: no token
        known = self._known.get(token)
        if known is not None:
            if self.clock() < known[1]:
                return known[0]
            del self._known[token]
        caller, expires = self.verifier.verified(token)  # raises for a bad token
        if self.capacity > 0:
            if len(self._known) >= self.capacity:
                # The oldest first: cheaper than LRU, and a quiz's players answer in waves.
                del self._known[next(iter(self._known))]
            self._known[token] = (caller, expires)
        return caller

    def __len__(self) -> int:
        return len(self._known)
