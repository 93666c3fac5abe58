"""Domain errors that map one-to-one onto gRPC status codes.

Handlers and stores raise these; the server interceptor turns them into a status
with the message, so every refusal reads the same on gRPC and (through Envoy) HTTP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import grpc


class ServiceError(Exception):
    """A refusal a client can understand and act on."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


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

    def __init__(self, message: str, violations: Sequence[FieldViolation] = ()) -> None:
        super().__init__(message)
        self.violations = tuple(violations)

    @classmethod
    def of(cls, violations: Sequence[FieldViolation]) -> InvalidArgument:
        return cls("; ".join(map(str, violations)), violations)

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
