"""What the stream service measures."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric

from services.mesh.metrics import Metrics

RPCS = ("WatchLeaderboard", "WatchQuiz")


class SentMessages:
    """Messages sent to watchers per RPC, as plain ints read at scrape time.

    A prometheus_client Counter takes a lock on every increment; the stream service
    increments once per message per watcher (10,000 times per update of a big quiz).
    """

    def __init__(self) -> None:
        self.counts = dict.fromkeys(RPCS, 0)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "quizmesh_stream_messages", "Messages sent to watchers", labels=["rpc"]
        )
        for rpc, count in self.counts.items():
            family.add_metric([rpc], count)
        yield family


@dataclass(frozen=True)
class StreamMetrics:
    active: Gauge
    sent: SentMessages
    answer_to_watchers: Histogram

    @classmethod
    def of(cls, metrics: Metrics) -> StreamMetrics:
        sent = SentMessages()
        metrics.registry.register(sent)
        return cls(
            active=metrics.gauge("quizmesh_active_streams", "Open watch streams", ["rpc"]),
            sent=sent,
            answer_to_watchers=metrics.histogram(
                "quizmesh_answer_to_watchers_seconds",
                "From an answer being accepted to its leaderboard leaving for the watchers",
                buckets=(0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0),
            ),
        )
