"""Wiring of the stream service: Redis, NATS/JetStream, token keys, SQL for quizzes
Redis does not hold; `create_server` for tests."""

from __future__ import annotations

import functools

from services.database.engine import create_engine
from services.database.records import QuizRecords
from services.identity.tokens import TokenVerifier
from services.live.board import LiveBoard
from services.live.pace import BoardPace
from services.live.pipeline import PipelinedRedis, RedisAddress
from services.live.quizzes import LiveQuizzes
from services.mesh import serve
from services.mesh.app import ServiceApp, build_server
from services.mesh.connections import Connections
from services.mesh.metrics import Metrics
from services.recovery.live_state import LiveStateRecovery
from services.stream.config import Settings
from services.stream.hub import QuizHub, QuizHubs
from services.stream.metrics import StreamMetrics
from services.stream.service import SERVICE_NAME, StreamService


async def create_server(settings: Settings) -> ServiceApp:
    verifier = TokenVerifier.of(settings)
    metrics = Metrics("stream")
    measured = StreamMetrics.of(metrics)
    conn = await Connections.open(settings, "stream")
    pipe = PipelinedRedis(RedisAddress.parse(settings.redis_url))
    board = LiveBoard(pipe, settings.key_prefix)
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
            own_ranks=measured.own_ranks.counts,
            pace=BoardPace.of(
                settings.board_interval_seconds,
                settings.small_quiz_board_interval_ms,
                settings.small_quiz_players,
            ),
        )
    )
    service = StreamService(
        LiveStateRecovery.of(
            QuizRecords(engine), LiveQuizzes(conn.redis, settings.key_prefix), conn, settings
        ),
        hubs,
        verifier,
        settings.heartbeat_seconds,
        measured,
    )
    app = build_server(
        settings,
        service.register,
        [SERVICE_NAME],
        conn.checks(),
        metrics,
    )
    app.before_stop.append(hubs.close)
    app.after_stop += [pipe.close, conn.close, engine.dispose]
    return app


def main() -> None:
    serve.main(
        "stream",
        Settings,
        create_server,
        # With the default (700 new objects) collections ran in the middle of every
        # fan-out and promoted the writes in flight; every few updates a full one
        # walked every object of every stream (~200 ms at 2,000 watchers).
        young_gc_threshold=50_000,
    )


if __name__ == "__main__":
    main()
