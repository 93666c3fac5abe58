"""Settings of the leaderboard service."""

from __future__ import annotations

from services.mesh.config import CommonSettings


class Settings(CommonSettings):
    grpc_port: int = 50053
    # At most one snapshot per quiz per interval, however many answers arrive.
    snapshot_interval_ms: int = 150
    # How many of the best players a snapshot carries.
    snapshot_top: int = 10
