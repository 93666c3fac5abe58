"""Wiring of the score service: Redis, JetStream, tokens; `create_server` for tests."""

from __future__ import annotations

import functools

from quizmesh.score.v1 import score_pb2, score_pb2_grpc

from services.database.engine import create_engine
from services.database.records import QuizRecords
from services.identity.tokens import TokenVerifier
from services.live.answers import AnswerBook
from services.live.pipeline import PipelinedRedis, RedisAddress
from services.live.quizzes import LiveQuizzes
from services.mesh import serve
from services.mesh.app import ServiceApp, build_server
from services.mesh.connections import Connections
from services.mesh.metrics import Metrics
from services.recovery.live_state import LiveStateRecovery
from services.score.answer_log import AnswerLog
from services.score.config import Settings
from services.score.hints import BoardHints
from services.score.redelivery import Redelivery
from services.score.service import ScoreService
from services.score.tokens import KnownTokens

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
SERVICE_NAME = score_pb2.DESCRIPTOR.services_by_name["ScoreService"].full_name


async def create_server(settings: Settings) -> ServiceApp:
    metrics = Metrics("score")
    conn = await Connections.open(settings, "score")
    # SQL only to rebuild a quiz whose live state Redis lost; answers never wait on it.
    engine = create_engine(settings.database_url)
    batch_sizes = metrics.histogram(
        "quizmesh_answer_batch_size",
        "Answers sharing one write: scripts to Redis (stage=redis), records to NATS (stage=nats)",
        ["stage"],
        buckets=BATCH_BUCKETS,
    )
    script_pipe = PipelinedRedis(
        RedisAddress.parse(settings.redis_url),
        timeout=settings.redis_timeout_seconds,
        max_hold=settings.batch_hold_seconds,
        observe_batch=batch_sizes.labels("redis").observe,
        min_gap=settings.batch_gap_seconds,
    )
    answer_log = AnswerLog(
        conn.nc,
        settings.publish_timeout_seconds,
        max_hold=settings.batch_hold_seconds,
        observe_batch=batch_sizes.labels("nats").observe,
        min_gap=settings.batch_gap_seconds,
    )
    await answer_log.start()
    redelivery = Redelivery(answer_log)
    hints = BoardHints(conn.nc, conn.subjects, settings.board_hint_interval_seconds)
    redelivery.start()
    service = ScoreService(
        book=AnswerBook(conn.redis, script_pipe, settings.key_prefix),
        answer_log=answer_log,
        redelivery=redelivery,
        subjects=conn.subjects,
        tokens=KnownTokens(TokenVerifier.of(settings), settings.token_cache_size),
        recovery=LiveStateRecovery.of(
            QuizRecords(engine), LiveQuizzes(conn.redis, settings.key_prefix), conn, settings
        ),
        answers=metrics.counter(
            "quizmesh_answers", "Answers by outcome: accepted, replayed or why refused", ["outcome"]
        ),
        hints=hints,
    )

    app = build_server(
        settings,
        functools.partial(score_pb2_grpc.add_ScoreServiceServicer_to_server, service),
        [SERVICE_NAME],
        conn.checks(),
        metrics,
    )
    app.after_stop += [
        redelivery.stop,
        answer_log.stop,
        hints.stop,
        script_pipe.close,
        conn.close,
        engine.dispose,
    ]
    return app


def main() -> None:
    # Each answer allocates a few hundred objects: with the default (700) the
    # cyclic GC took ~4% of the server's CPU under load.
    serve.main("score", Settings, create_server, young_gc_threshold=20_000)


if __name__ == "__main__":
    main()
