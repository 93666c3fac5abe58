"""Health follows the dependencies: SERVING only while they answer, and back
again by itself once they return. These tests own (and kill) private servers."""

from __future__ import annotations

import asyncio
import dataclasses

import grpc
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from devstack import infra
from services.mesh.health_client import health_status, health_watch
from tests.stack import Backends, Stack, running_stack

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
REFLECTION_INFO = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


async def status(channel: grpc.aio.Channel, service: str = "") -> int:
    return await health_status(channel, service, seconds=2)


def reflection_info(
    channel: grpc.aio.Channel,
) -> grpc.aio.StreamStreamMultiCallable[
    reflection_pb2.ServerReflectionRequest, reflection_pb2.ServerReflectionResponse
]:
    """ServerReflectionInfo, built from the channel: the typeshed ServerReflectionStub
    takes only a sync grpc.Channel and leaves the method untyped."""
    return channel.stream_stream(
        REFLECTION_INFO,
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )


async def until(channel: grpc.aio.Channel, wanted: int, seconds: float = 10) -> None:
    """Follows the server's health Watch stream until it reports `wanted`."""
    watch = health_watch(channel)
    try:
        async with asyncio.timeout(seconds):
            async for reply in watch:
                if reply.status == wanted:
                    return
    finally:
        watch.cancel()


async def test_every_service_reports_serving_and_lists_itself_by_reflection(
    stack: Stack,
) -> None:
    for name, channel in stack.channels.items():
        assert await status(channel) == SERVING, name
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        async for reply in reflection_info(channel)(iter([request])):
            names = {s.name for s in reply.list_services_response.service}
            assert f"quizmesh.{name}.v1.{name.capitalize()}Service" in names
            assert "grpc.health.v1.Health" in names
            for service in (n for n in names if n.startswith("quizmesh.")):
                assert await status(channel, service) == SERVING
            break


async def test_health_turns_not_serving_while_redis_is_down(
    own_backends: Backends, private_redis: infra.ValkeyServer
) -> None:
    mine = dataclasses.replace(own_backends, redis_url=private_redis.url)
    async with running_stack(mine) as stack:
        for channel in stack.channels.values():
            await until(channel, SERVING)
        await private_redis.kill()
        for channel in stack.channels.values():
            await until(channel, NOT_SERVING)
        await private_redis.restart()
        for channel in stack.channels.values():
            await until(channel, SERVING)


async def test_health_turns_not_serving_while_nats_is_down(
    own_backends: Backends, private_nats: infra.NatsServer
) -> None:
    mine = dataclasses.replace(own_backends, nats_url=private_nats.url)
    async with running_stack(mine) as stack:
        for channel in stack.channels.values():
            await until(channel, SERVING)
        await private_nats.kill()
        for channel in stack.channels.values():
            await until(channel, NOT_SERVING)
        await private_nats.restart()
        for channel in stack.channels.values():
            await until(channel, SERVING)
