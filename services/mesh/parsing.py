"""Requests parsed and checked against their contract's field rules before a handler
runs, so that bytes that are no valid message, or a field out of its declared
range, get INVALID_ARGUMENT like any other bad input (grpc would say UNKNOWN)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf.message import DecodeError

from services.mesh import validation
from services.mesh.context import Context, Handler
from services.mesh.errors import InvalidArgument, Reason
from services.mesh.interception import MethodInterceptor, StreamBehaviour, UnaryBehaviour


def parser(deserialize: Callable[[bytes], Any] | None) -> Callable[[Any], Any]:
    def parse(raw: Any) -> Any:
        if deserialize is None:
            return raw
        try:
            request = deserialize(raw)
        except DecodeError as e:
            raise InvalidArgument(
                "the request is not a valid message for this method",
                Reason.ERROR_REASON_MESSAGE_INVALID,
            ) from e
        validation.check(request)
        return request

    return parse


class ParsingInterceptor(MethodInterceptor):
    """Innermost: the request arrives as bytes and leaves as a checked message."""

    def request_deserializer(self, handler: Handler) -> Any:
        return None

    def wrap_unary(self, method: str, inner: UnaryBehaviour, handler: Handler) -> UnaryBehaviour:
        parse = parser(handler.request_deserializer)

        async def unary(raw: Any, context: Context) -> Any:
            return await inner(parse(raw), context)

        return unary

    def wrap_stream(self, method: str, inner: StreamBehaviour, handler: Handler) -> StreamBehaviour:
        parse = parser(handler.request_deserializer)

        async def stream(raw: Any, context: Context) -> None:
            await inner(parse(raw), context)

        return stream
