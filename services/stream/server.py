"""Wiring of the stream service: Redis, NATS/JetStream, token keys; `create_server`
for tests."""

from __future__ import annotations

from redis.asyncio import Redis

from services.core import logs, messaging, runtime
from services.core.auth import TokenVerifier
from services.core.board import Board
from services.stream.config import Settings
from services.stream.hub import QuizHubs
from services.stream.service import SERVICE_NAME, StreamService


async def create_server(settings: Settings) -> runtime.ServiceApp:
    verifier = TokenVerifier.from_file(
        settings.jwks_file, settings.token_issuer, settings.token_audience
    )
    redis = Redis.from_url(settings.redis_url, decode_responses=True)
    nc = await messaging.connect(settings.nats_url, name="stream")
    js = nc.jetstream()
    subjects = messaging.Subjects(settings.nats_prefix)
    await messaging.ensure_streams(js, subjects)
    board = Board(redis, settings.key_prefix)
    hubs = QuizHubs(
        board,
        nc,
        js,
        subjects,
        top=settings.snapshot_top,
        max_queued_events=settings.max_queued_events,
    )
    service = StreamService(board, hubs, verifier, settings.heartbeat_seconds)
    app = runtime.build_server(
        settings.grpc_host,
        settings.grpc_port,
        service.register,
        [SERVICE_NAME],
        {"redis": redis.ping, "nats": messaging.connected(nc)},
    )
    app.before_stop.append(hubs.close)
    app.after_stop += [nc.drain, redis.aclose]
    return app


def main() -> None:
    settings = Settings()
    logs.configure("stream", settings.log_level)
    runtime.run(lambda: create_server(settings), settings.shutdown_grace_seconds)


if __name__ == "__main__":
    main()
