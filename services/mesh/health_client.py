"""grpc.health.v1 as a client asks it (the dev stack, the tests, probes): typed
calls built from the channel, since the HealthStub of types-grpcio-health-checking
declares neither Check nor Watch."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2

CHECK = "/grpc.health.v1.Health/Check"
WATCH = "/grpc.health.v1.Health/Watch"


async def health_status(
    channel: grpc.aio.Channel, service: str = "", seconds: float | None = 1.0
) -> int:
    """The status Health/Check reports for `service` ("" is the whole server), with
    `seconds` as the call's gRPC timeout (None: no deadline)."""
    check: grpc.aio.UnaryUnaryMultiCallable[
        health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse
    ] = channel.unary_unary(
        CHECK,
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    reply = await check(health_pb2.HealthCheckRequest(service=service), timeout=seconds)
    return int(reply.status)


def health_watch(
    channel: grpc.aio.Channel, service: str = ""
) -> grpc.aio.UnaryStreamCall[health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse]:
    """The Health/Watch stream for `service`: its status now, then every change."""
    watch: grpc.aio.UnaryStreamMultiCallable[
        health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse
    ] = channel.unary_stream(
        WATCH,
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    return watch(health_pb2.HealthCheckRequest(service=service))
