"""Wiring of the quiz service: SQL, Redis, NATS, tokens; `create_server` for tests."""

from __future__ import annotations

import grpc
from quizmesh.quiz.v1 import quiz_pb2, quiz_pb2_grpc

from services.database.engine import create_engine, health_check
from services.mesh import runtime
from services.mesh.connections import Connections, token_issuer, token_verifier
from services.mesh.metrics import Metrics
from services.quiz.announcer import Announcer
from services.quiz.config import Settings
from services.quiz.live import LiveQuizzes
from services.quiz.service import QuizService
from services.quiz.store import QuizStore
from services.recovery.live_state import LiveStateRecovery, restore_lost_states
from services.sync.lag import report_sync_lag

SERVICE_NAME = quiz_pb2.DESCRIPTOR.services_by_name["QuizService"].full_name


async def create_server(settings: Settings) -> runtime.ServiceApp:
    engine = create_engine(settings.database_url)
    metrics = Metrics("quiz")
    conn = await Connections.open(settings, "quiz")
    service = QuizService(
        engine=engine,
        store=QuizStore(engine),
        live=LiveQuizzes(conn.redis, settings.key_prefix),
        announcer=Announcer(conn.nc, conn.js, conn.subjects),
        verifier=token_verifier(settings),
        issuer=token_issuer(settings),
        player_token_ttl=settings.player_token_ttl_seconds,
    )

    def register(server: grpc.aio.Server) -> None:
        quiz_pb2_grpc.add_QuizServiceServicer_to_server(service, server)

    app = runtime.build_server(
        settings,
        register,
        [SERVICE_NAME],
        {"database": health_check(engine), **conn.checks()},
        metrics,
    )
    recovery = LiveStateRecovery.of(engine, conn, settings)
    unannounced = metrics.gauge(
        "quizmesh_unannounced_steps",
        "Host steps (start, advance, close) committed over 3 s ago whose announcement "
        "on NATS failed again at the last sweep",
    )
    app.background += [
        lambda: service.lifecycle.sweep_deadlines(settings.deadline_sweep_ms / 1000, unannounced),
        lambda: restore_lost_states(service.store, recovery, settings.restore_check_seconds),
        lambda: report_sync_lag(engine, conn.js, conn.subjects, metrics, every=5.0),
    ]
    app.after_stop += [conn.close, engine.dispose]
    return app


def main() -> None:
    runtime.serve("quiz", Settings(), create_server)


if __name__ == "__main__":
    main()
