"""Wiring of the score service: Redis, JetStream, tokens; `create_server` for tests."""

from __future__ import annotations

import grpc
from quizmesh.score.v1 import score_pb2, score_pb2_grpc

from services.core import runtime
from services.core.connections import Connections, token_verifier
from services.core.metrics import Metrics
from services.database.engine import create_engine
from services.recovery.live_state import LiveStateRecovery
from services.score.config import Settings
from services.score.service import ScoreService
from services.score.store import AnswerBook

SERVICE_NAME = score_pb2.DESCRIPTOR.services_by_name["ScoreService"].full_name


async def create_server(settings: Settings) -> runtime.ServiceApp:
    metrics = Metrics("score")
    conn = await Connections.open(settings, "score")
    # SQL only to rebuild a quiz whose live state Redis lost; answers never wait on it.
    engine = create_engine(settings.database_url)
    service = ScoreService(
        book=AnswerBook(conn.redis, settings.key_prefix),
        js=conn.js,
        subjects=conn.subjects,
        verifier=token_verifier(settings),
        recovery=LiveStateRecovery.of(engine, conn, settings),
        answers=metrics.counter(
            "quizmesh_answers", "Answers by outcome: accepted, replayed or why refused", ["outcome"]
        ),
        publish_timeout=settings.publish_timeout_seconds,
    )

    def register(server: grpc.aio.Server) -> None:
        score_pb2_grpc.add_ScoreServiceServicer_to_server(service, server)

    app = runtime.build_server(
        settings,
        register,
        [SERVICE_NAME],
        conn.checks(),
        metrics,
    )
    app.after_stop += [conn.close, engine.dispose]
    return app


def main() -> None:
    runtime.serve("score", Settings(), create_server)


if __name__ == "__main__":
    main()
