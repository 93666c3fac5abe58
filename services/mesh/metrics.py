"""Prometheus metrics of one service, in a registry of its own (no process-wide
globals: tests run several services in one process), served on the metrics port."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        self.rpcs = self.counter(
            "quizmesh_rpc_requests", "RPCs handled, by method and status code", ["method", "code"]
        )
        self.rpc_seconds = self.histogram(
            "quizmesh_rpc_duration_seconds", "Time to handle a unary RPC", ["method"]
        )
        self.dependency_errors = self.counter(
            "quizmesh_dependency_errors",
            "Failed calls or health checks of Redis, NATS or the database",
            ["dependency"],
        )
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def counter(self, name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
        return Counter(name, doc, labels, registry=self.registry)

    def gauge(self, name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
        return Gauge(name, doc, labels, registry=self.registry)

    def histogram(
        self,
        name: str,
        doc: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> Histogram:
        return Histogram(name, doc, labels, buckets=buckets, registry=self.registry)

    def serve(self, host: str, port: int) -> int:
        """Starts the /metrics endpoint (port 0: any free port); returns its port."""
        self._server, self._thread = start_http_server(port, host, registry=self.registry)
        return int(self._server.server_port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def dependency_of(error: BaseException) -> str:
    """Which dependency an exception came from, by its package."""
    module = type(error).__module__
    for name in ("redis", "nats", "sqlalchemy", "aiomysql", "aiosqlite"):
        if module.startswith(name):
            return "database" if name in ("sqlalchemy", "aiomysql", "aiosqlite") else name
    return "other"
