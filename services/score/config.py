"""Settings of the score service."""

from __future__ import annotations

from services.mesh.config import CommonSettings


class Settings(CommonSettings):
    grpc_port: int = 50052
    # How long to wait for JetStream to confirm an answer is stored durably.
    publish_timeout_seconds: float = 2.0
    # A Redis reply slower than this fails the answers in flight (clients retry).
    redis_timeout_seconds: float = 5.0
    # Group commit: while earlier answers await Redis's reply (or JetStream's ack),
    # new ones wait up to this long to share the next write (0: never wait).
    batch_hold_seconds: float = 0.002
    # Pacing: at most one write to Redis and one to JetStream per this interval, so
    # that under load a write carries several answers (a shared server spends ~46 µs
    # (Redis) and ~72 µs (JetStream) on an answer alone in a write, 16 and 22 µs with
    # 8: benchmarks/answer_cost.py); adds at most this much latency (0: no pacing).
    batch_gap_seconds: float = 0.001
    # The leaderboard service hears that a quiz's board changed at most this often
    # from each score process (hints.py); well under its 250 ms snapshot tick.
    board_hint_interval_seconds: float = 0.05
    # Verified tokens remembered (about 1 KB each); one per player answering here.
    token_cache_size: int = 50_000
