"""What a handler raised, as the call's status: a ServiceError's own code and message
(with a google.rpc.BadRequest naming each bad field of an InvalidArgument), a
dependency that is briefly away as UNAVAILABLE, anything else as a logged INTERNAL
with no internals in the message. Envoy prints the same in its JSON error body."""

from __future__ import annotations

import logging
from typing import Any

import google.rpc.error_details_pb2 as error_details_pb2
import google.rpc.status_pb2 as status_pb2
import grpc
import nats.errors as nats_errors
import redis.exceptions as redis_errors
import sqlalchemy.exc as sql_errors
from google.protobuf import any_pb2
from grpc_status import rpc_status

from services.mesh.context import Context, Handler
from services.mesh.errors import InvalidArgument, ServiceError
from services.mesh.interception import MethodInterceptor, StreamBehaviour, UnaryBehaviour
from services.mesh.metrics import Metrics, dependency_of

log = logging.getLogger(__name__)

# Errors that mean "a dependency is briefly away", not "this request is wrong".
TRANSIENT: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    nats_errors.ConnectionClosedError,
    nats_errors.ConnectionReconnectingError,
    nats_errors.NoServersError,
    nats_errors.TimeoutError,
    sql_errors.OperationalError,
    sql_errors.InterfaceError,
    ConnectionError,
    TimeoutError,
)


def rich_status(error: ServiceError) -> grpc.Status:
    """The status of a refusal, with its google.rpc details (grpc-status-details-bin)."""
    details = []
    if isinstance(error, InvalidArgument) and error.violations:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description
                )
                for v in error.violations
            ]
        )
        detail = any_pb2.Any()
        detail.Pack(bad)
        details.append(detail)
    status = status_pb2.Status(code=error.code.value[0], message=error.message, details=details)
    return rpc_status.to_status(status)


class StatusInterceptor(MethodInterceptor):
    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self.metrics = metrics

    def wrap_unary(self, method: str, inner: UnaryBehaviour, handler: Handler) -> UnaryBehaviour:
        async def unary(request: Any, context: Context) -> Any:
            try:
                return await inner(request, context)
            except Exception as e:
                await self._abort(method, context, e)

        return unary

    def wrap_stream(self, method: str, inner: StreamBehaviour, handler: Handler) -> StreamBehaviour:
        async def stream(request: Any, context: Context) -> None:
            try:
                await inner(request, context)
            except Exception as e:
                await self._abort(method, context, e)

        return stream

    async def _abort(self, method: str, context: Context, error: Exception) -> Any:
        if isinstance(error, grpc.aio.AbortError):
            raise error  # the handler aborted with a status of its own
        if isinstance(error, ServiceError):
            await context.abort_with_status(rich_status(error))
        if isinstance(error, TRANSIENT):
            # A dependency hiccup (Redis/NATS/SQL restarting): the call may be retried.
            self.metrics.dependency_errors.labels(dependency_of(error)).inc()
            log.warning("dependency not answering", extra={"rpc": method, "error": repr(error)})
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, "a backing service is not answering; retry"
            )
        log.error("unhandled error", exc_info=error, extra={"rpc": method})
        await context.abort(grpc.StatusCode.INTERNAL, "internal error; try again")
