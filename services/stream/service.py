"""StreamService: live leaderboards and quiz events for many watchers per process.

The handlers write bytes that their quiz's hub serialized once for every watcher,
so the service is registered with a pass-through response serializer (`register`)
instead of the generated helper, which would serialize each message per stream.
Browsers' streams (WatchLeaderboardSse, WatchQuizSse) are the same watches whose
bytes are SSE frames (frames.py), so Envoy has nothing to transcode per message.
They write with `context.write` rather than yielding: an async generator handler
puts two more generator hops on the path of every message to every watcher.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
from quizmesh.stream.v1 import stream_pb2

from services import ids
from services.identity.tokens import Role, TokenVerifier
from services.mesh.context import Context, Handler
from services.mesh.errors import FailedPrecondition, InvalidArgument, Reason
from services.recovery.live_state import LiveStateRecovery
from services.stream.hub import QuizHub, QuizHubs
from services.stream.metrics import StreamMetrics
from services.stream.watches import Watch

SERVICE_NAME = stream_pb2.DESCRIPTOR.services_by_name["StreamService"].full_name


def _already_serialized(message: bytes) -> bytes:
    return message


class _Ticker:
    """Calls `watch.tick()` every `interval` seconds until cancelled."""

    __slots__ = ("_handle", "_interval", "_loop", "_watch")

    def __init__(self, watch: Watch, interval: float) -> None:
        self._watch = watch
        self._interval = interval
        self._loop = asyncio.get_running_loop()
        self._handle = self._loop.call_later(interval, self._run)

    def _run(self) -> None:
        self._watch.tick()
        self._handle = self._loop.call_later(self._interval, self._run)

    def cancel(self) -> None:
        self._handle.cancel()


async def deliver(watch: Watch, heartbeat_seconds: float) -> AsyncIterator[bytes]:
    """What the hub put in a watcher's outbox, and a heartbeat once it has been quiet
    for between half of `heartbeat_seconds` and all of it.

    One repeating timer per watch looks for quiet spells, instead of a timeout
    around every wait: that timeout was a visible share of each message's cost."""
    ticker = _Ticker(watch, heartbeat_seconds / 2)
    try:
        while True:
            if watch.ended is not None:
                raise watch.ended
            watch.wake.clear()
            message = watch.take()
            if message is None:
                if not watch.beat_due:
                    await watch.wake.wait()
                    continue
                message = watch.heartbeat()
            watch.sending()
            yield message
    finally:
        ticker.cancel()


# An int64 sequence has at most 19 digits.
MAX_EVENT_ID_DIGITS = 19


def last_event_id(context: Context) -> int:
    """The Last-Event-ID header a reconnecting EventSource sends (Envoy passes it on
    as metadata): the sequence of the last event it got; 0 when absent."""
    sent = [v for k, v in context.invocation_metadata() or () if k == "last-event-id"]
    if not sent:
        return 0
    value = sent[-1] if isinstance(sent[-1], str) else sent[-1].decode(errors="replace")
    if not (value.isascii() and value.isdigit() and len(value) <= MAX_EVENT_ID_DIGITS):
        raise InvalidArgument.field(
            "Last-Event-ID", f"must be the sequence of an event (digits), got {value[:40]!r}"
        )
    return int(value)


@dataclass
class StreamService:
    recovery: LiveStateRecovery
    hubs: QuizHubs
    verifier: TokenVerifier
    heartbeat_seconds: float
    metrics: StreamMetrics

    def register(self, server: grpc.aio.Server) -> None:
        handlers: dict[str, Handler] = {
            name: grpc.unary_stream_rpc_method_handler(
                method,
                request_deserializer=request.FromString,
                response_serializer=_already_serialized,
            )
            for name, method, request in (
                ("WatchLeaderboard", self.WatchLeaderboard, stream_pb2.WatchLeaderboardRequest),
                ("WatchQuiz", self.WatchQuiz, stream_pb2.WatchQuizRequest),
                (
                    "WatchLeaderboardSse",
                    self.WatchLeaderboardSse,
                    stream_pb2.WatchLeaderboardSseRequest,
                ),
                ("WatchQuizSse", self.WatchQuizSse, stream_pb2.WatchQuizSseRequest),
            )
        }
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),)
        )
        server.add_registered_method_handlers(SERVICE_NAME, handlers)

    async def WatchLeaderboard(
        self, request: stream_pb2.WatchLeaderboardRequest, context: Context
    ) -> None:
        await self._watch_leaderboard(request, context, "WatchLeaderboard", sse=False)

    async def WatchLeaderboardSse(
        self, request: stream_pb2.WatchLeaderboardSseRequest, context: Context
    ) -> None:
        await self._watch_leaderboard(request, context, "WatchLeaderboardSse", sse=True)

    async def WatchQuiz(self, request: stream_pb2.WatchQuizRequest, context: Context) -> None:
        await self._watch_quiz(request, context, "WatchQuiz", sse=False)

    async def WatchQuizSse(self, request: stream_pb2.WatchQuizSseRequest, context: Context) -> None:
        await self._watch_quiz(request, context, "WatchQuizSse", sse=True)

    async def _watch_leaderboard(
        self,
        request: stream_pb2.WatchLeaderboardRequest | stream_pb2.WatchLeaderboardSseRequest,
        context: Context,
        rpc: str,
        sse: bool,
    ) -> None:
        quiz_id = ids.quiz_code(request.quiz_id)
        caller = self.verifier.optional_caller(context, request.access_token)
        # Anyone may watch; only a player of this quiz also gets their own standing.
        player_id = (
            caller.subject
            if caller is not None and caller.role is Role.PLAYER and caller.quiz_id == quiz_id
            else None
        )
        hub = await self._acquire(quiz_id)
        watch = hub.watch_leaderboard(player_id, sse)
        try:
            await hub.greet(watch)
            await self._send(watch, rpc, context)
        finally:
            hub.forget(watch)
            await self.hubs.release(hub)

    async def _watch_quiz(
        self,
        request: stream_pb2.WatchQuizRequest | stream_pb2.WatchQuizSseRequest,
        context: Context,
        rpc: str,
        sse: bool,
    ) -> None:
        quiz_id = ids.quiz_code(request.quiz_id)
        # Anyone may watch, but a token that is present must be valid.
        self.verifier.optional_caller(context, request.access_token)
        after = request.after_sequence or last_event_id(context)
        hub = await self._acquire(quiz_id)
        watch = hub.watch_quiz(after, sse)
        try:
            await self._send(watch, rpc, context)
        finally:
            hub.forget(watch)
            await self.hubs.release(hub)

    async def _acquire(self, quiz_id: str) -> QuizHub:
        # A quiz with a hub here exists: a reconnect storm of 10,000 watchers then
        # costs no Redis round trip per watcher. Without live state in Redis, SQL
        # tells an unknown quiz (NOT_FOUND) from one being restored after Redis lost
        # it (UNAVAILABLE: clients retry) and from one long over.
        if not self.hubs.watching(quiz_id) and not await self.recovery.ensure_live(quiz_id):
            raise FailedPrecondition(
                f"quiz {quiz_id} is over and has no live updates any more; "
                "its final leaderboard is at GetLeaderboard",
                Reason.ERROR_REASON_QUIZ_OVER,
            )
        return await self.hubs.acquire(quiz_id)

    async def _send(self, watch: Watch, rpc: str, context: Context) -> None:
        active = self.metrics.active.labels(rpc)
        sent = self.metrics.sent.counts
        active.inc()
        try:
            async for message in deliver(watch, self.heartbeat_seconds):
                await context.write(message)
                sent[rpc] += 1
        finally:
            active.dec()
