"""Settings of the quiz service."""

from __future__ import annotations

from services.mesh.config import CommonSettings


class Settings(CommonSettings):
    grpc_port: int = 50051
    player_token_ttl_seconds: int = 24 * 3600
    # How often each replica looks for questions whose deadline has passed.
    deadline_sweep_ms: int = 200
    # How often each replica checks that every active quiz still has its Redis state.
    restore_check_seconds: float = 1.0
