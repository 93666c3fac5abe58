"""Wiring of the stream service: Redis, NATS/JetStream, token keys, SQL for quizzes
Redis does not hold; `create_server` for tests."""

from __future__ import annotations

import functools

from services.database.engine import create_engine
from services.live.board import Board
from services.mesh import runtime
from services.mesh.connections import Connections, token_verifier
from services.mesh.metrics import Metrics
from services.recovery.live_state import LiveStateRecovery
from services.stream.config import Settings
from services.stream.hub import QuizHub, QuizHubs
from services.stream.metrics import StreamMetrics
from services.stream.service import SERVICE_NAME, StreamService


async def create_server(settings: Settings) -> runtime.ServiceApp:
    verifier = token_verifier(settings)
    metrics = Metrics("stream")
    measured = StreamMetrics.of(metrics)
    conn = await Connections.open(settings, "stream")
    board = Board(conn.redis, settings.key_prefix)
    # SQL only for watchers of quizzes Redis does not hold (see StreamService._acquire);
    # not a health dependency: live updates do not need it.
    engine = create_engine(settings.database_url)
    hubs = QuizHubs(
        functools.partial(
            QuizHub,
            board=board,
            nc=conn.nc,
            js=conn.js,
            subjects=conn.subjects,
            top=settings.snapshot_top,
            max_queued_events=settings.max_queued_events,
            answer_to_watchers=measured.answer_to_watchers,
            board_interval_seconds=settings.board_interval_seconds,
        )
    )
    service = StreamService(
        LiveStateRecovery.of(engine, conn, settings),
        hubs,
        verifier,
        settings.heartbeat_seconds,
        measured,
    )
    app = runtime.build_server(
        settings,
        service.register,
        [SERVICE_NAME],
        conn.checks(),
        metrics,
    )
    app.before_stop.append(hubs.close)
    app.after_stop += [conn.close, engine.dispose]
    return app


def main() -> None:
    settings = Settings()
    runtime.serve(
        "stream",
        settings,
        create_server,
        processes=settings.processes,
        # With the default (700 new objects) collections ran in the middle of every
        # fan-out and promoted the writes in flight; every few updates a full one
        # walked every object of every stream (~200 ms at 2,000 watchers).
        young_gc_threshold=50_000,
    )


if __name__ == "__main__":
    main()
