"""Settings of the stream service."""

from __future__ import annotations

from pydantic import Field

from services.mesh.config import CommonSettings


class Settings(CommonSettings):
    grpc_port: int = 50054
    # Proxies and load balancers close streams that stay silent for too long.
    heartbeat_seconds: float = 15.0
    # How many of the best players the first snapshot of a new hub carries.
    snapshot_top: int = 10
    # A watcher this many lifecycle events behind is disconnected; it resumes with
    # after_sequence instead of holding memory for ever.
    max_queued_events: int = 1000
    # At most one leaderboard per watcher per this many seconds in a quiz of more
    # than QUIZMESH_SMALL_QUIZ_PLAYERS players (0: every snapshot the leaderboard
    # service publishes; keep it equal to QUIZMESH_SNAPSHOT_INTERVAL_MS, or a board
    # waits for both). Smaller quizzes: QUIZMESH_SMALL_QUIZ_BOARD_INTERVAL_MS. Each board is a
    # message for this process, Envoy and every client: at 1,000
    # players on 2 cores, 0.5 s cut the stream service's CPU 3.5x, Envoy's 2.3x and
    # answer-to-every-watcher p50 from 1.3 s to 0.6 s (benchmarks/notes-fanout.md).
    board_interval_seconds: float = Field(default=0.25, ge=0.0, le=10.0)
