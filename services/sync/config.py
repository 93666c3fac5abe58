"""Settings of the sync job."""

from __future__ import annotations

from services.mesh.config import CommonSettings

# The CronJob's schedule; `make run` runs the job on the same one.
SCHEDULE = "* * * * *"
SCHEDULE_SECONDS = 60


class Settings(CommonSettings):
    # Accepted answers written to SQL per transaction (and checkpoint step). Bigger
    # batches mean fewer commits and statements: a million answers sync ~30 % faster
    # with 10,000 than with 2,000 (benchmarks/notes-leaderboard-sync.md).
    sync_batch_size: int = 10_000
    # A closed quiz becomes final only this long after it closed, so that an answer
    # accepted just before the close has surely reached JetStream.
    sync_final_grace_seconds: float = 10.0
    # How long a final quiz's live state stays in Redis before it expires.
    sync_closed_ttl_seconds: int = 3_600
