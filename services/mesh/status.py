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
from google.protobuf.message import Message
from grpc_status import rpc_status
from quizmesh.common.v1 import errors_pb2

from services.mesh.context import Context, Handler
from services.mesh.errors import DOMAIN, InvalidArgument, Reason, ServiceError, reason_name
from services.mesh.interception import MethodInterceptor, StreamBehaviour, UnaryBehaviour
from services.mesh.metrics import Metrics, dependency_of

log = logging.getLogger(__name__)

# Errors that mean "a dependency is briefly away", not "this request is wrong".
TRANSIENT: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    # A Redis Cluster electing a new primary, once redis-py's own retries ran out.
    redis_errors.ClusterDownError,
    redis_errors.TryAgainError,
    nats_errors.ConnectionClosedError,
    nats_errors.ConnectionReconnectingError,
    nats_errors.NoServersError,
    nats_errors.TimeoutError,
    sql_errors.OperationalError,
    sql_errors.InterfaceError,
    ConnectionError,
    TimeoutError,
)


def _packed(detail: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(detail)
    return packed


def status_of(
    code: grpc.StatusCode,
    message: str,
    reason: errors_pb2.ErrorReason.ValueType,
    *more: Message,
) -> grpc.Status:
    """A status with its google.rpc details (grpc-status-details-bin): the ErrorInfo
    that says why, then `more`."""
    info = error_details_pb2.ErrorInfo(reason=reason_name(reason), domain=DOMAIN)
    details = [_packed(info), *map(_packed, more)]
    status = status_pb2.Status(code=code.value[0], message=message, details=details)
    return rpc_status.to_status(status)


def rich_status(error: ServiceError) -> grpc.Status:
    """The status of a refusal: its reason, and for an InvalidArgument with
    violations a google.rpc.BadRequest naming each field."""
    more: list[Message] = []
    if isinstance(error, InvalidArgument) and error.violations:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description
                )
                for v in error.violations
            ]
        )
        more.append(bad)
    return status_of(error.code, error.message, error.reason, *more)


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
            await context.abort_with_status(
                status_of(
                    grpc.StatusCode.UNAVAILABLE,
                    "a backing service is not answering; retry",
                    Reason.ERROR_REASON_DEPENDENCY_UNAVAILABLE,
                )
            )
        log.error("unhandled error", exc_info=error, extra={"rpc": method})
        await context.abort_with_status(
            status_of(
                grpc.StatusCode.INTERNAL, "internal error; try again", Reason.ERROR_REASON_INTERNAL
            )
        )
