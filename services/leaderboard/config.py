"""Settings of the leaderboard service."""

from __future__ import annotations

from services.mesh.config import CommonSettings


class Settings(CommonSettings):
    grpc_port: int = 50053
    # At most one snapshot per quiz of more than QUIZMESH_SMALL_QUIZ_PLAYERS players
    # per interval, however many answers arrive (smaller quizzes:
    # QUIZMESH_SMALL_QUIZ_BOARD_INTERVAL_MS). Equal to the stream service's board
    # interval (0.25 s), so each snapshot goes to the watchers as it arrives instead
    # of waiting for the next board slot: end to end p99 437 ms at 150 ms, 306 ms at
    # 250 ms, the same messages to watchers (docs/performance.md "End to end").
    snapshot_interval_ms: int = 250
    # How many of the best players a snapshot carries.
    snapshot_top: int = 10
