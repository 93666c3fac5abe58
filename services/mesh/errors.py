"""Domain errors that map one-to-one onto gRPC status codes.

Handlers and stores raise these; the server interceptor turns them into a status
with the message and a google.rpc.ErrorInfo carrying the stable reason (the
contract's quizmesh.common.v1.ErrorReason), so every refusal reads the same on gRPC
and (through Envoy) HTTP, for people and for programs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from quizmesh.common.v1 import errors_pb2

Reason = errors_pb2.ErrorReason
# ErrorInfo.domain of every QuizMesh refusal.
DOMAIN = "quizmesh"


def reason_name(reason: errors_pb2.ErrorReason.ValueType) -> str:
    """ErrorInfo.reason: the enum value's name without its prefix."""
    return Reason.Name(reason).removeprefix("ERROR_REASON_")


class ServiceError(Exception):
    """A refusal a client can understand (`message`) and act on (`reason`)."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, reason: errors_pb2.ErrorReason.ValueType) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


@dataclass(frozen=True)
class FieldViolation:
    """One request field and what is wrong with it (a google.rpc.BadRequest entry)."""

    field: str
    description: str

    def __str__(self) -> str:
        return f"{self.field} {self.description}"


class InvalidArgument(ServiceError):
    """A malformed request; with `violations`, the status carries a
    google.rpc.BadRequest naming each offending field."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(
        self,
        message: str,
        reason: errors_pb2.ErrorReason.ValueType,
        violations: Sequence[FieldViolation] = (),
    ) -> None:
        super().__init__(message, reason)
        self.violations = tuple(violations)

    @classmethod
    def of(cls, violations: Sequence[FieldViolation]) -> InvalidArgument:
        return cls("; ".join(map(str, violations)), Reason.ERROR_REASON_FIELD_INVALID, violations)

    @classmethod
    def field(cls, field: str, description: str) -> InvalidArgument:
        return cls.of([FieldViolation(field, description)])


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class AlreadyExists(ServiceError):
    code = grpc.StatusCode.ALREADY_EXISTS


class Unauthenticated(ServiceError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ServiceError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(ServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(ServiceError):
    code = grpc.StatusCode.UNAVAILABLE
