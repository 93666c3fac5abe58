"""StreamService: live leaderboards and quiz events for many watchers per process.

The handlers yield bytes that their quiz's hub serialized once for every watcher,
so the service is registered with a pass-through response serializer (`register`)
instead of the generated helper, which would serialize each message per stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
from quizmesh.stream.v1 import stream_pb2

from services.core import ids
from services.core.auth import Role, TokenVerifier
from services.core.board import Board
from services.core.errors import InvalidArgument, NotFound
from services.stream.hub import QuizHubs, Watch
from services.stream.metrics import StreamMetrics

SERVICE_NAME = stream_pb2.DESCRIPTOR.services_by_name["StreamService"].full_name


def _already_serialized(message: bytes) -> bytes:
    return message


async def deliver(watch: Watch, heartbeat_seconds: float) -> AsyncIterator[bytes]:
    """What the hub put in a watcher's outbox, and a heartbeat after each quiet spell."""
    while True:
        if watch.ended is not None:
            raise watch.ended
        watch.wake.clear()
        message = watch.take()
        if message is None:
            try:
                async with asyncio.timeout(heartbeat_seconds):
                    await watch.wake.wait()
                continue
            except TimeoutError:
                message = watch.heartbeat()
        yield message


class StreamService:
    def __init__(
        self,
        board: Board,
        hubs: QuizHubs,
        verifier: TokenVerifier,
        heartbeat_seconds: float,
        metrics: StreamMetrics,
    ) -> None:
        self.metrics = metrics
        self.board = board
        self.hubs = hubs
        self.verifier = verifier
        self.heartbeat_seconds = heartbeat_seconds

    def register(self, server: grpc.aio.Server) -> None:
        handlers = {
            "WatchLeaderboard": grpc.unary_stream_rpc_method_handler(
                self.WatchLeaderboard,
                request_deserializer=stream_pb2.WatchLeaderboardRequest.FromString,
                response_serializer=_already_serialized,
            ),
            "WatchQuiz": grpc.unary_stream_rpc_method_handler(
                self.WatchQuiz,
                request_deserializer=stream_pb2.WatchQuizRequest.FromString,
                response_serializer=_already_serialized,
            ),
        }
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),)
        )
        server.add_registered_method_handlers(SERVICE_NAME, handlers)

    async def WatchLeaderboard(
        self, request: stream_pb2.WatchLeaderboardRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        quiz_id = ids.quiz_code(request.quiz_id)
        caller = self.verifier.optional_caller(context, request.access_token)
        await self._require_quiz(quiz_id)
        # Anyone may watch; only a player of this quiz also gets their own standing.
        player_id = (
            caller.subject
            if caller is not None and caller.role is Role.PLAYER and caller.quiz_id == quiz_id
            else None
        )
        hub = await self.hubs.acquire(quiz_id)
        watch = hub.watch_leaderboard(player_id)
        try:
            await hub.greet(watch)
            async for message in self._deliver(watch, "WatchLeaderboard"):
                yield message
        finally:
            hub.forget(watch)
            await self.hubs.release(hub)

    async def WatchQuiz(
        self, request: stream_pb2.WatchQuizRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        quiz_id = ids.quiz_code(request.quiz_id)
        if request.after_sequence < 0:
            raise InvalidArgument(
                f"after_sequence must not be negative, got {request.after_sequence}; "
                "0 replays every event"
            )
        # Anyone may watch, but a token that is present must be valid.
        self.verifier.optional_caller(context, request.access_token)
        await self._require_quiz(quiz_id)
        hub = await self.hubs.acquire(quiz_id)
        watch = hub.watch_quiz(request.after_sequence)
        try:
            async for message in self._deliver(watch, "WatchQuiz"):
                yield message
        finally:
            hub.forget(watch)
            await self.hubs.release(hub)

    async def _deliver(self, watch: Watch, rpc: str) -> AsyncIterator[bytes]:
        active, delivered = self.metrics.active.labels(rpc), self.metrics.delivered.labels(rpc)
        active.inc()
        try:
            async for message in deliver(watch, self.heartbeat_seconds):
                delivered.inc()
                yield message
        finally:
            active.dec()

    async def _require_quiz(self, quiz_id: str) -> None:
        if not await self.board.exists(quiz_id):
            raise NotFound(f"quiz {quiz_id} not found")
