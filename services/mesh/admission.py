"""Which calls a stopping server still takes: those already in flight finish, new ones
are refused UNAVAILABLE (clients retry them on another replica).

`server.stop(grace)` alone does not keep that promise: grpc-core, as it shuts down,
cancels every call it has received but grpc.aio has not yet picked up (grpc.aio
picks one per turn of the event loop, so under load hundreds wait there), and those
come back CANCELLED, which no client retries. So a stop first closes the admission
and keeps the server running until nothing is in flight and no call has arrived for
a moment: what grpc-core held has been picked up and answered by then.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from services.mesh.context import Context, Handler
from services.mesh.errors import Reason, Unavailable
from services.mesh.interception import MethodInterceptor, StreamBehaviour, UnaryBehaviour

# How long no call may have arrived before the server stops: longer than grpc.aio
# takes to pick up whatever grpc-core still holds (a call or so per loop turn).
QUIET_SECONDS = 0.2


class Admission:
    """Counts our calls in flight (`with admission:` around each); once closed,
    refuses new ones."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.closed = False
        self._last_arrival = 0.0
        self._idle = asyncio.Event()

    def close(self) -> None:
        self.closed = True
        self._last_arrival = asyncio.get_running_loop().time()

    def __enter__(self) -> None:
        if self.closed:
            # An arrival all the same: grpc-core may hold more behind it.
            self._last_arrival = asyncio.get_running_loop().time()
            raise Unavailable(
                "this server is shutting down; retry", Reason.ERROR_REASON_SHUTTING_DOWN
            )
        self.in_flight += 1

    def __exit__(self, *_: object) -> None:
        self.in_flight -= 1
        if self.closed and not self.in_flight:
            self._idle.set()

    async def drained(self, within: float) -> bool:
        """Waits, at most `within` seconds, until no call is in flight and none has
        arrived for QUIET_SECONDS; True if none is in flight at the end."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while (now := loop.time()) < deadline:
            if self.in_flight:
                self._idle.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(deadline):
                        await self._idle.wait()
                continue
            quiet_at = self._last_arrival + QUIET_SECONDS
            if now >= quiet_at:
                break
            await asyncio.sleep(min(quiet_at, deadline) - now)
        return not self.in_flight


class AdmissionInterceptor(MethodInterceptor):
    """Our own services only: health and reflection answer to the end."""

    def __init__(self, admission: Admission) -> None:
        super().__init__()
        self.admission = admission

    def wrap_unary(self, method: str, inner: UnaryBehaviour, handler: Handler) -> UnaryBehaviour:
        if not method.startswith("/quizmesh."):
            return inner
        admission = self.admission

        async def unary(request: Any, context: Context) -> Any:
            with admission:
                return await inner(request, context)

        return unary

    def wrap_stream(self, method: str, inner: StreamBehaviour, handler: Handler) -> StreamBehaviour:
        if not method.startswith("/quizmesh."):
            return inner
        admission = self.admission

        async def stream(request: Any, context: Context) -> None:
            with admission:
                await inner(request, context)

        return stream
