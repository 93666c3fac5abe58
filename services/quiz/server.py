"""Wiring of the quiz service: SQL, Redis, NATS, tokens; `create_server` for tests."""

from __future__ import annotations

import logging

import grpc
from quizmesh.quiz.v1 import quiz_pb2, quiz_pb2_grpc
from redis.asyncio import Redis
from sqlalchemy import text

from services.core import logs, messaging, runtime
from services.core.auth import TokenIssuer, TokenVerifier
from services.database.engine import create_engine
from services.quiz.announcer import Announcer
from services.quiz.config import Settings
from services.quiz.live import LiveQuizzes
from services.quiz.service import QuizService
from services.quiz.store import QuizStore

log = logging.getLogger(__name__)
SERVICE_NAME = quiz_pb2.DESCRIPTOR.services_by_name["QuizService"].full_name


async def create_server(settings: Settings) -> runtime.ServiceApp:
    engine = create_engine(settings.database_url)
    redis = Redis.from_url(settings.redis_url, decode_responses=True)
    nc = await messaging.connect(settings.nats_url, name="quiz")
    js = nc.jetstream()
    subjects = messaging.Subjects(settings.nats_prefix)
    await messaging.ensure_streams(js, subjects)
    store = QuizStore(engine)
    service = QuizService(
        engine=engine,
        store=store,
        live=LiveQuizzes(redis, settings.key_prefix),
        announcer=Announcer(nc, js, subjects),
        verifier=TokenVerifier.from_file(
            settings.jwks_file, settings.token_issuer, settings.token_audience
        ),
        issuer=TokenIssuer.from_file(
            settings.signing_key_file, settings.token_issuer, settings.token_audience
        ),
        player_token_ttl=settings.player_token_ttl_seconds,
    )

    async def database() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    def register(server: grpc.aio.Server) -> None:
        quiz_pb2_grpc.add_QuizServiceServicer_to_server(service, server)

    app = runtime.build_server(
        settings.grpc_host,
        settings.grpc_port,
        register,
        [SERVICE_NAME],
        {"database": database, "redis": redis.ping, "nats": messaging.connected(nc)},
    )
    app.background.append(
        lambda: service.lifecycle.sweep_deadlines(settings.deadline_sweep_ms / 1000)
    )
    app.after_stop += [nc.drain, redis.aclose, engine.dispose]
    return app


def main() -> None:
    settings = Settings()
    logs.configure("quiz", settings.log_level)
    runtime.run(lambda: create_server(settings), settings.shutdown_grace_seconds)


if __name__ == "__main__":
    main()
