"""grpc.health.v1 that follows a service's dependencies: SERVING only while every one
answers its check, and NOT_SERVING for good once the service begins to stop. The
checks also tell the process's log when a dependency goes away or answers again
(outages.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping

from grpc_health.v1 import health, health_pb2

from services.mesh import logs
from services.mesh.metrics import Metrics
from services.mesh.outages import reason_of
from services.mesh.tasks import cancel_and_wait

Check = Callable[[], Awaitable[object]]

# How long ending the check loop may take.
STOP_SECONDS = 5.0


class DependencyHealth:
    def __init__(
        self,
        service_names: Iterable[str],
        checks: Mapping[str, Check],
        metrics: Metrics,
        interval: float = 1.0,
    ) -> None:
        self.servicer = health.aio.HealthServicer()
        self._metrics = metrics
        self._names = ["", *service_names]
        self._checks = dict(checks)
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.failing: list[str] = list(self._checks)
        self._outages = logs.outages()
        self._outages.watch(self._checks)

    async def check_once(self) -> bool:
        failing = []
        timeout = max(self._interval, 1.0)
        for name, check in self._checks.items():
            try:
                async with asyncio.timeout(timeout):
                    await check()
            except TimeoutError:
                failing.append(name)
                self._outages.unreachable(name, f"no answer within {timeout:g} s")
            except Exception as e:
                failing.append(name)
                self._outages.unreachable(name, reason_of(e))
            else:
                self._outages.reachable(name)
        for name in failing:
            self._metrics.dependency_errors.labels(name).inc()
        self.failing = failing
        status = (
            health_pb2.HealthCheckResponse.NOT_SERVING
            if failing
            else health_pb2.HealthCheckResponse.SERVING
        )
        # Once the graceful shutdown began, the servicer ignores this.
        for name in self._names:
            await self.servicer.set(name, status)
        return not failing

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="dependency-health")

    async def _loop(self) -> None:
        # The flag, not only cancellation, ends the loop: Python 3.11's wait_for (as
        # in a dependency's client) swallows a cancel that lands as its call finishes.
        while not self._stopping:
            await asyncio.sleep(self._interval)
            await self.check_once()

    async def shutting_down(self) -> None:
        """NOT_SERVING for every service name, for good; the checks stop."""
        self._stopping = True
        await self.servicer.enter_graceful_shutdown()
        if self._task:
            await cancel_and_wait([self._task], STOP_SECONDS)
