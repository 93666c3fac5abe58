"""A cap on the server streams (watches) one client holds open on one process."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from services.mesh.context import Context, Handler
from services.mesh.errors import Reason, ResourceExhausted
from services.mesh.interception import MethodInterceptor, StreamBehaviour

# Set by Envoy to the client address it trusts (see envoy/envoy.yaml.tmpl).
CLIENT_HEADER = "x-quizmesh-client"


def client_address(metadata: Iterable[tuple[str, str | bytes]], peer: str) -> str:
    """Envoy's word for callers from outside; the peer's address for callers inside
    the mesh (peer looks like "ipv4:10.0.0.7:51234" or "ipv6:[::1]:51234")."""
    for key, value in metadata:
        if key == CLIENT_HEADER and isinstance(value, str) and value:
            return value
    host = peer.split(":", 1)[-1]
    return host.rsplit(":", 1)[0].strip("[]") if ":" in host else host


class StreamQuota:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: Counter[str] = Counter()

    @contextlib.contextmanager
    def hold(self, client: str) -> Iterator[None]:
        if self._open[client] >= self.limit:
            raise ResourceExhausted(
                f"too many open watches from {client} (at most {self.limit}); "
                "close one, then retry",
                Reason.ERROR_REASON_TOO_MANY_WATCHES,
            )
        self._open[client] += 1
        try:
            yield
        finally:
            self._open[client] -= 1
            if not self._open[client]:
                del self._open[client]


class StreamQuotaInterceptor(MethodInterceptor):
    """Our own streams only: health watches come from the platform, not clients."""

    def __init__(self, quota: StreamQuota) -> None:
        super().__init__()
        self.quota = quota

    def wrap_stream(self, method: str, inner: StreamBehaviour, handler: Handler) -> StreamBehaviour:
        if not method.startswith("/quizmesh."):
            return inner
        quota = self.quota

        async def stream(request: Any, context: Context) -> None:
            client = client_address(context.invocation_metadata() or (), context.peer())
            with quota.hold(client):
                await inner(request, context)

        return stream
