"""Wiring of the score service: Redis, JetStream, tokens; `create_server` for tests."""

from __future__ import annotations

import grpc
from quizmesh.score.v1 import score_pb2, score_pb2_grpc
from redis.asyncio import Redis

from services.core import logs, messaging, runtime
from services.core.auth import TokenVerifier
from services.score.config import Settings
from services.score.service import ScoreService
from services.score.store import AnswerBook

SERVICE_NAME = score_pb2.DESCRIPTOR.services_by_name["ScoreService"].full_name


async def create_server(settings: Settings) -> runtime.ServiceApp:
    redis = Redis.from_url(settings.redis_url, decode_responses=True)
    nc = await messaging.connect(settings.nats_url, name="score")
    js = nc.jetstream()
    subjects = messaging.Subjects(settings.nats_prefix)
    await messaging.ensure_streams(js, subjects)
    service = ScoreService(
        book=AnswerBook(redis, settings.key_prefix),
        js=js,
        subjects=subjects,
        verifier=TokenVerifier.from_file(
            settings.jwks_file, settings.token_issuer, settings.token_audience
        ),
        publish_timeout=settings.publish_timeout_seconds,
    )

    def register(server: grpc.aio.Server) -> None:
        score_pb2_grpc.add_ScoreServiceServicer_to_server(service, server)

    app = runtime.build_server(
        settings.grpc_host,
        settings.grpc_port,
        register,
        [SERVICE_NAME],
        {"redis": redis.ping, "nats": messaging.connected(nc)},
    )
    app.after_stop += [nc.drain, redis.aclose]
    return app


def main() -> None:
    settings = Settings()
    logs.configure("score", settings.log_level)
    runtime.run(lambda: create_server(settings), settings.shutdown_grace_seconds)


if __name__ == "__main__":
    main()
