"""What the stream service measures."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric

from services.mesh.metrics import Metrics

RPCS = ("WatchLeaderboard", "WatchQuiz", "WatchLeaderboardSse", "WatchQuizSse")


class Tally:
    """A counter by one label, as plain ints read at scrape time.

    A prometheus_client Counter takes a lock on every increment; the stream service
    counts once per message per watcher (10,000 times per update of a big quiz).
    """

    def __init__(self, name: str, doc: str, label: str, values: tuple[str, ...]) -> None:
        self.name, self.doc, self.label = name, doc, label
        self.counts = dict.fromkeys(values, 0)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.doc, labels=[self.label])
        for value, count in self.counts.items():
            family.add_metric([value], count)
        yield family


@dataclass(frozen=True)
class StreamMetrics:
    active: Gauge
    sent: Tally
    # Watchers' own ranks worked out from this process's copy of the board, or read
    # from Redis while the copy is not level (services/stream/board_copy.py).
    own_ranks: Tally
    answer_to_watchers: Histogram

    @classmethod
    def of(cls, metrics: Metrics) -> StreamMetrics:
        sent = Tally("quizmesh_stream_messages", "Messages sent to watchers", "rpc", RPCS)
        own_ranks = Tally(
            "quizmesh_own_ranks", "Watchers' own ranks worked out", "source", ("copy", "redis")
        )
        metrics.registry.register(sent)
        metrics.registry.register(own_ranks)
        return cls(
            active=metrics.gauge("quizmesh_active_streams", "Open watch streams", ["rpc"]),
            sent=sent,
            own_ranks=own_ranks,
            answer_to_watchers=metrics.histogram(
                "quizmesh_answer_to_watchers_seconds",
                "From an answer being accepted to its leaderboard leaving for the watchers",
                buckets=(0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0),
            ),
        )
