"""Wiring of the leaderboard service: Redis, NATS, SQL (final boards), the snapshot
coalescer; `create_server` for tests."""

from __future__ import annotations

import functools

from quizmesh.leaderboard.v1 import leaderboard_pb2, leaderboard_pb2_grpc

from services.database.engine import create_engine, health_check
from services.database.records import QuizRecords
from services.identity.tokens import TokenVerifier
from services.leaderboard.coalescer import SnapshotCoalescer
from services.leaderboard.config import Settings
from services.leaderboard.final_board import FinalBoard
from services.leaderboard.service import LeaderboardService
from services.live.board import LiveBoard
from services.live.pace import BoardPace
from services.live.pipeline import PipelinedRedis, RedisAddress
from services.live.quizzes import LiveQuizzes
from services.mesh import serve
from services.mesh.app import ServiceApp, build_server
from services.mesh.connections import Connections
from services.mesh.metrics import Metrics
from services.recovery.live_state import LiveStateRecovery

SERVICE_NAME = leaderboard_pb2.DESCRIPTOR.services_by_name["LeaderboardService"].full_name


async def create_server(settings: Settings) -> ServiceApp:
    engine = create_engine(settings.database_url)
    metrics = Metrics("leaderboard")
    conn = await Connections.open(settings, "leaderboard")
    pipe = PipelinedRedis(RedisAddress.parse(settings.redis_url))
    board = LiveBoard(pipe, settings.key_prefix)
    service = LeaderboardService(
        board,
        FinalBoard(engine),
        LiveStateRecovery.of(
            QuizRecords(engine), LiveQuizzes(conn.redis, settings.key_prefix), conn, settings
        ),
        TokenVerifier.of(settings),
    )
    coalescer = SnapshotCoalescer(
        conn.nc,
        board,
        conn.subjects,
        BoardPace.of(
            settings.snapshot_interval_ms / 1000,
            settings.small_quiz_board_interval_ms,
            settings.small_quiz_players,
        ),
        top=settings.snapshot_top,
    )

    app = build_server(
        settings,
        functools.partial(leaderboard_pb2_grpc.add_LeaderboardServiceServicer_to_server, service),
        [SERVICE_NAME],
        {"database": health_check(engine), **conn.checks()},
        metrics,
    )
    app.background.append(coalescer.run)
    app.after_stop += [pipe.close, conn.close, engine.dispose]
    return app


def main() -> None:
    serve.main("leaderboard", Settings, create_server)


if __name__ == "__main__":
    main()
