"""Every call counted by its status code (and unary calls timed) in the service's
metrics, under the trace id of its caller (see tracing.py)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc

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


class ObservingInterceptor(MethodInterceptor):
    """Outermost, so it sees the status the call ends with."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self.metrics = metrics

    def wrap_unary(self, method: str, inner: UnaryBehaviour, handler: Handler) -> UnaryBehaviour:
        name = method.rsplit("/", 1)[-1]
        rpcs, seconds = self.metrics.rpcs, self.metrics.rpc_seconds.labels(name)

        async def unary(request: Any, context: Context) -> Any:
            started = time.perf_counter()
            trace = tracing.begin(tracing.from_metadata(context.invocation_metadata() or ()))
            error: BaseException | None = None
            try:
                return await inner(request, context)
            except BaseException as e:
                error = e
                raise
            finally:
                tracing.end(trace)
                rpcs.labels(name, _code(context, error).name).inc()
                seconds.observe(time.perf_counter() - started)

        return unary

    def wrap_stream(self, method: str, inner: StreamBehaviour, handler: Handler) -> StreamBehaviour:
        name = method.rsplit("/", 1)[-1]
        rpcs = self.metrics.rpcs

        async def stream(request: Any, context: Context) -> None:
            trace = tracing.begin(tracing.from_metadata(context.invocation_metadata() or ()))
            error: BaseException | None = None
            try:
                await inner(request, context)
            except BaseException as e:
                error = e
                raise
            finally:
                tracing.end(trace)
                rpcs.labels(name, _code(context, error).name).inc()

        return stream
