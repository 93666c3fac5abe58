"""Wiring of the leaderboard service: Redis, NATS, the snapshot coalescer;
`create_server` for tests."""

from __future__ import annotations

import grpc
from quizmesh.leaderboard.v1 import leaderboard_pb2, leaderboard_pb2_grpc
from redis.asyncio import Redis

from services.core import logs, messaging, runtime
from services.core.board import Board
from services.leaderboard.coalescer import SnapshotCoalescer
from services.leaderboard.config import Settings
from services.leaderboard.service import LeaderboardService

SERVICE_NAME = leaderboard_pb2.DESCRIPTOR.services_by_name["LeaderboardService"].full_name


async def create_server(settings: Settings) -> runtime.ServiceApp:
    redis = Redis.from_url(settings.redis_url, decode_responses=True)
    nc = await messaging.connect(settings.nats_url, name="leaderboard")
    board = Board(redis, settings.key_prefix)
    service = LeaderboardService(board)
    coalescer = SnapshotCoalescer(
        nc,
        board,
        messaging.Subjects(settings.nats_prefix),
        interval_seconds=settings.snapshot_interval_ms / 1000,
        top=settings.snapshot_top,
    )

    def register(server: grpc.aio.Server) -> None:
        leaderboard_pb2_grpc.add_LeaderboardServiceServicer_to_server(service, server)

    app = runtime.build_server(
        settings.grpc_host,
        settings.grpc_port,
        register,
        [SERVICE_NAME],
        {"redis": redis.ping, "nats": messaging.connected(nc)},
    )
    app.background.append(coalescer.run)
    app.after_stop += [nc.drain, redis.aclose]
    return app


def main() -> None:
    settings = Settings()
    logs.configure("leaderboard", settings.log_level)
    runtime.run(lambda: create_server(settings), settings.shutdown_grace_seconds)


if __name__ == "__main__":
    main()
