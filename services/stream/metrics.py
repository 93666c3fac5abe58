"""What the stream service measures."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

from services.core.metrics import Metrics


@dataclass(frozen=True)
class StreamMetrics:
    active: Gauge
    delivered: Counter
    answer_to_watchers: Histogram

    @classmethod
    def of(cls, metrics: Metrics) -> StreamMetrics:
        return cls(
            active=metrics.gauge("quizmesh_active_streams", "Open watch streams", ["rpc"]),
            delivered=metrics.counter(
                "quizmesh_stream_messages", "Messages sent to watchers", ["rpc"]
            ),
            answer_to_watchers=metrics.histogram(
                "quizmesh_answer_to_watchers_seconds",
                "From an answer being accepted to its leaderboard leaving for the watchers",
                buckets=(0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0),
            ),
        )
