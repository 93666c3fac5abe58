"""Settings of the stream service."""

from __future__ import annotations

from services.core.config import CommonSettings


class Settings(CommonSettings):
    grpc_port: int = 50054
    # Proxies and load balancers close streams that stay silent for too long.
    heartbeat_seconds: float = 15.0
    # How many of the best players the first snapshot of a new hub carries.
    snapshot_top: int = 10
    # A watcher this many lifecycle events behind is disconnected; it resumes with
    # after_sequence instead of holding memory for ever.
    max_queued_events: int = 1000
