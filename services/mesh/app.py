"""A built QuizMesh gRPC server: its servicers behind the interceptors (one concern
each), health that follows its dependencies, reflection, and a bounded graceful stop."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.mesh.admission import Admission, AdmissionInterceptor
from services.mesh.config import CommonSettings
from services.mesh.health import Check, DependencyHealth
from services.mesh.metrics import Metrics
from services.mesh.observing import ObservingInterceptor
from services.mesh.parsing import ParsingInterceptor
from services.mesh.status import StatusInterceptor
from services.mesh.stream_quota import StreamQuota, StreamQuotaInterceptor
from services.mesh.tasks import cancel_and_wait, run_bounded

log = logging.getLogger(__name__)

# How long each step of a graceful stop after the server's own grace may take.
STOP_STEP_SECONDS = 5.0

# A reconnect storm opens thousands of streams at once; grpc-core's defaults
# (1,000 / 3,000 pending) would cancel many of them.
SERVER_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.server.max_pending_requests", 100_000),
    ("grpc.server.max_pending_requests_hard_limit", 200_000),
    ("grpc.so_reuseport", 1),
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.keepalive_permit_without_calls", 1),
]

Closer = Callable[[], Awaitable[None]]


@dataclass
class ServiceApp:
    """A built server with its lifecycle hooks; tests bind port 0 and read `port`."""

    server: grpc.aio.Server
    port: int
    health: DependencyHealth
    metrics: Metrics
    admission: Admission
    metrics_host: str = "127.0.0.1"
    # The /metrics port (0 until started if configured as 0: any free port).
    metrics_port: int = 0
    background: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)
    # Run after health turns NOT_SERVING, before the server stops (e.g. end streams).
    before_stop: list[Closer] = field(default_factory=list)
    # Run after the server stopped (drain NATS, close Redis and the database).
    after_stop: list[Closer] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stopped: bool = False

    async def start(self) -> None:
        self.metrics_port = self.metrics.serve(self.metrics_host, self.metrics_port)
        await self.server.start()
        await self.health.check_once()
        self.health.start()
        self._tasks = [asyncio.create_task(job()) for job in self.background]

    async def stop(self, grace: float) -> None:
        """Idempotent graceful stop: in-flight calls finish within `grace` seconds,
        new ones are refused UNAVAILABLE meanwhile."""
        if self._stopped:
            return
        self._stopped = True
        started = time.monotonic()
        # Every step bounded: a task stuck in a dependency's client must not turn
        # SIGTERM into a hang (the orchestrator would SIGKILL us without closing
        # anything).
        await self.health.shutting_down()
        self.admission.close()
        for hook in self.before_stop:
            await run_bounded(hook(), STOP_STEP_SECONDS)
        # The server keeps running until the calls it took are done (see admission.py).
        if not await self.admission.drained(grace - (time.monotonic() - started)):
            log.warning(
                "calls still in flight at the end of the grace period",
                extra={"calls": self.admission.in_flight},
            )
        await self.server.stop(max(0.0, grace - (time.monotonic() - started)))
        await cancel_and_wait(self._tasks, STOP_STEP_SECONDS)
        for hook in self.after_stop:
            await run_bounded(hook(), STOP_STEP_SECONDS)
        self.metrics.stop()
        log.info("stopped", extra={"seconds": round(time.monotonic() - started, 3)})


def build_server(
    settings: CommonSettings,
    register: Callable[[grpc.aio.Server], None],
    service_names: list[str],
    checks: Mapping[str, Check],
    metrics: Metrics,
) -> ServiceApp:
    """A grpc.aio server with our servicers, health and reflection, bound to the
    configured host and port, counting its RPCs in `metrics`."""
    admission = Admission()
    server = grpc.aio.server(
        # Outermost first: the observer sees the status the others settle on.
        interceptors=[
            ObservingInterceptor(metrics),
            StatusInterceptor(metrics),
            AdmissionInterceptor(admission),
            StreamQuotaInterceptor(StreamQuota.of(settings)),
            ParsingInterceptor(),
        ],
        options=SERVER_OPTIONS,
    )
    register(server)
    dependency_health = DependencyHealth(service_names, checks, metrics)
    health_pb2_grpc.add_HealthServicer_to_server(dependency_health.servicer, server)
    reflection.enable_server_reflection(
        [*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    bound = server.add_insecure_port(f"{settings.grpc_host}:{settings.grpc_port}")
    return ServiceApp(
        server=server,
        port=bound,
        health=dependency_health,
        metrics=metrics,
        admission=admission,
        metrics_host=settings.metrics_host,
        metrics_port=settings.metrics_port,
    )
