"""The shape every QuizMesh server interceptor shares: it wraps a method's handler
ONCE, when the method is first called, and serves later calls from that cache, so
the chain of concerns costs a dictionary lookup per call rather than new handler
objects per call. A concern implements `wrap_unary` and `wrap_stream`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from services.mesh.context import Context, Handler

UnaryBehaviour = Callable[[Any, Context], Awaitable[Any]]
# Streams are written with context.write (a coroutine), whatever the handler
# itself was: an async generator is drained into writes by `as_writer`.
StreamBehaviour = Callable[[Any, Context], Awaitable[None]]


def as_writer(
    behaviour: Callable[[Any, Context], Any],
) -> StreamBehaviour:
    """A server-streaming behaviour as one coroutine: generator handlers have what
    they yield written; handlers that write with context.write run as they are."""

    async def write(request: Any, context: Context) -> None:
        result = behaviour(request, context)
        if hasattr(result, "__aiter__"):
            items: AsyncIterator[Any] = result
            async for item in items:
                await context.write(item)
        else:
            await result

    return write


class MethodInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        method: str = details.method
        found = self._handlers.get(method)
        if found is not None:
            return found
        handler = await continuation(details)
        if handler is None:  # unknown method: UNIMPLEMENTED, and nothing cached
            return None
        wrapped = self._wrap(method, handler)
        self._handlers[method] = wrapped
        return wrapped

    def _wrap(self, method: str, handler: Handler) -> Handler:
        # grpc's types describe the sync server's behaviours; ours are coroutines.
        behaviours: Any = handler
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self.wrap_unary(method, behaviours.unary_unary, handler),
                request_deserializer=self.request_deserializer(handler),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self.wrap_stream(method, as_writer(behaviours.unary_stream), handler),
                request_deserializer=self.request_deserializer(handler),
                response_serializer=handler.response_serializer,
            )
        return handler  # no client-streaming methods here

    def request_deserializer(self, handler: Handler) -> Any:
        """What grpc parses requests with before the wrapped behaviour (a concern that
        parses requests itself returns None)."""
        return handler.request_deserializer

    def wrap_unary(self, method: str, inner: UnaryBehaviour, handler: Handler) -> UnaryBehaviour:
        return inner

    def wrap_stream(self, method: str, inner: StreamBehaviour, handler: Handler) -> StreamBehaviour:
        return inner
