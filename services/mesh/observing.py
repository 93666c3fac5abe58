"""Every call counted by its status code (and unary calls timed) in the service's
metrics, under the trace id of its caller (see tracing.py)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
from prometheus_client import Counter, Histogram

from services.mesh import tracing
from services.mesh.context import Context, Handler
from services.mesh.interception import MethodInterceptor, StreamBehaviour, UnaryBehaviour
from services.mesh.metrics import Metrics


def _code(context: Context, error: BaseException | None) -> grpc.StatusCode:
    if isinstance(error, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    code: grpc.StatusCode | None = context.code()
    if code is not None:
        return code  # set by an abort
    return grpc.StatusCode.OK if error is None else grpc.StatusCode.UNKNOWN


class _Counts:
    """One method's counters by status code, each looked up once: labels() takes a
    lock and builds a key per call."""

    __slots__ = ("children", "name", "rpcs")

    def __init__(self, rpcs: Counter, name: str) -> None:
        self.rpcs = rpcs
        self.name = name
        self.children: dict[grpc.StatusCode, Any] = {}

    def of(self, code: grpc.StatusCode) -> Any:
        child = self.children.get(code)
        if child is None:
            child = self.children[code] = self.rpcs.labels(self.name, code.name)
        return child


class _Observed:
    """One call: its trace id set for its duration, then its count by status code
    (and, for unary calls, its duration)."""

    __slots__ = ("context", "counts", "seconds", "started", "trace")

    def __init__(self, context: Context, counts: _Counts, seconds: Histogram | None) -> None:
        self.context = context
        self.counts = counts
        self.seconds = seconds

    async def __aenter__(self) -> None:
        self.started = time.perf_counter()
        metadata = self.context.invocation_metadata() or ()
        self.trace = tracing.begin(tracing.from_metadata(metadata))

    async def __aexit__(self, kind: Any, error: BaseException | None, tb: Any) -> None:
        tracing.end(self.trace)
        self.counts.of(_code(self.context, error)).inc()
        if self.seconds is not None:
            self.seconds.observe(time.perf_counter() - self.started)


class ObservingInterceptor(MethodInterceptor):
    """Outermost, so it sees the status the call ends with."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self.metrics = metrics

    def wrap_unary(self, method: str, inner: UnaryBehaviour, handler: Handler) -> UnaryBehaviour:
        name = method.rsplit("/", 1)[-1]
        counts, seconds = _Counts(self.metrics.rpcs, name), self.metrics.rpc_seconds.labels(name)

        async def unary(request: Any, context: Context) -> Any:
            async with _Observed(context, counts, seconds):
                return await inner(request, context)

        return unary

    def wrap_stream(self, method: str, inner: StreamBehaviour, handler: Handler) -> StreamBehaviour:
        counts = _Counts(self.metrics.rpcs, method.rsplit("/", 1)[-1])

        async def stream(request: Any, context: Context) -> None:
            # Not timed: a watch lasts as long as its watcher wants.
            async with _Observed(context, counts, None):
                await inner(request, context)

        return stream
