"""What every QuizMesh gRPC server shares: error mapping, health that follows its
dependencies, reflection, and a graceful shutdown on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
import nats.errors as nats_errors
import redis.exceptions as redis_errors
import sqlalchemy.exc as sql_errors
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.identity import tokens as auth
from services.mesh import logs, tracing, validation, workers
from services.mesh.config import CommonSettings
from services.mesh.errors import InvalidArgument, ServiceError
from services.mesh.metrics import Metrics, dependency_of
from services.mesh.stream_quota import StreamQuota, client_address
from services.mesh.tasks import cancel_and_wait, run_bounded

log = logging.getLogger(__name__)

# Errors that mean "a dependency is briefly away", not "this request is wrong".
TRANSIENT: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    nats_errors.ConnectionClosedError,
    nats_errors.ConnectionReconnectingError,
    nats_errors.NoServersError,
    nats_errors.TimeoutError,
    sql_errors.OperationalError,
    sql_errors.InterfaceError,
    ConnectionError,
    TimeoutError,
)

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


class _Handling:
    """Maps what a handler raised to a status with a message, and records the RPC's
    count by code (and latency, for unary calls) in the service's metrics."""

    # One per call, and one held per open watch: no per-instance dict.
    __slots__ = ("code", "context", "method", "metrics", "name", "started", "timed", "trace")

    def __init__(
        self, context: grpc.aio.ServicerContext, method: str, metrics: Metrics, timed: bool
    ) -> None:
        self.context = context
        self.method = method
        self.name = method.rsplit("/", 1)[-1]
        self.metrics = metrics
        self.timed = timed
        self.code = grpc.StatusCode.OK

    async def __aenter__(self) -> None:
        self.started = time.perf_counter()
        self.trace = tracing.begin(tracing.from_metadata(self.context.invocation_metadata() or ()))

    async def __aexit__(self, kind: Any, error: BaseException | None, tb: Any) -> bool:
        try:
            await self._as_status(error)
        finally:
            tracing.end(self.trace)
            self.metrics.rpcs.labels(self.name, self.code.name).inc()
            if self.timed:
                self.metrics.rpc_seconds.labels(self.name).observe(
                    time.perf_counter() - self.started
                )
        return False

    async def _as_status(self, error: BaseException | None) -> None:
        if error is None:
            return
        if isinstance(error, asyncio.CancelledError):
            self.code = grpc.StatusCode.CANCELLED
            return
        if isinstance(error, grpc.aio.AbortError):
            self.code = grpc.StatusCode.UNKNOWN  # aborted by the handler itself
            return
        if isinstance(error, InvalidArgument) and error.violations:
            await self._abort(error.code, error.message, _bad_request(error))
        if isinstance(error, ServiceError):
            await self._abort(error.code, error.message)
        if isinstance(error, TRANSIENT):
            # A dependency hiccup (Redis/NATS/SQL restarting): the call may be retried.
            self.metrics.dependency_errors.labels(dependency_of(error)).inc()
            log.warning(
                "dependency not answering", extra={"rpc": self.method, "error": repr(error)}
            )
            await self._abort(
                grpc.StatusCode.UNAVAILABLE, "a backing service is not answering; retry"
            )
        if isinstance(error, Exception):
            log.error("unhandled error", exc_info=error, extra={"rpc": self.method})
            await self._abort(grpc.StatusCode.INTERNAL, "internal error; try again")

    async def _abort(
        self, code: grpc.StatusCode, message: str, details: tuple[tuple[str, bytes], ...] = ()
    ) -> None:
        self.code = code
        await self.context.abort(code, message, details)


def _bad_request(error: InvalidArgument) -> tuple[tuple[str, bytes], ...]:
    """The google.rpc.Status trailer (grpc-status-details-bin) carrying a BadRequest
    with every field violation; Envoy prints it in the HTTP error body."""
    bad = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in error.violations
        ]
    )
    detail = any_pb2.Any()
    detail.Pack(bad)
    status = status_pb2.Status(code=error.code.value[0], message=error.message, details=[detail])
    return ((_STATUS_DETAILS_KEY, status.SerializeToString()),)


_STATUS_DETAILS_KEY = "grpc-status-details-bin"


def _parser(deserialize: Callable[[bytes], Any] | None) -> Callable[[Any], Any]:
    """Parses a request and checks the field rules its contract declares."""

    def parse(raw: Any) -> Any:
        if deserialize is None:
            return raw
        try:
            request = deserialize(raw)
        except DecodeError as e:
            raise InvalidArgument("the request is not a valid message for this method") from e
        validation.check(request)
        return request

    return parse


class ErrorInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Checks each request against its contract's field rules, turns ServiceError
    into its status, a dependency's failure into UNAVAILABLE, anything else into a
    logged INTERNAL; counts every RPC by its code."""

    def __init__(self, metrics: Metrics, quota: StreamQuota | None = None) -> None:
        self.metrics = metrics
        # Our own streams only: health watches come from the platform, not clients.
        self.quota = quota

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method
        metrics = self.metrics
        # The request is parsed here rather than by grpc, so that bytes that are no
        # valid message get INVALID_ARGUMENT like any other bad input (not UNKNOWN).
        parse = _parser(handler.request_deserializer)
        if handler.unary_unary is not None:
            inner_uu = handler.unary_unary

            async def unary_unary(raw: Any, context: grpc.aio.ServicerContext) -> Any:
                async with _Handling(context, method, metrics, timed=True):
                    return await inner_uu(parse(raw), context)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, response_serializer=handler.response_serializer
            )
        if handler.unary_stream is not None:
            inner_us = handler.unary_stream

            quota = self.quota if method.startswith("/quizmesh.") else None

            async def unary_stream(
                raw: Any, context: grpc.aio.ServicerContext
            ) -> AsyncIterator[Any]:
                async with _Handling(context, method, metrics, timed=False):
                    with _held(quota, context):
                        stream = inner_us(parse(raw), context)
                        if hasattr(stream, "__aiter__"):
                            async for item in stream:
                                yield item
                        else:  # a handler writing with context.write (e.g. Health.Watch)
                            await stream

            return grpc.unary_stream_rpc_method_handler(
                unary_stream, response_serializer=handler.response_serializer
            )
        return handler


def _held(quota: StreamQuota | None, context: grpc.aio.ServicerContext) -> Any:
    if quota is None:
        return contextlib.nullcontext()
    client = client_address(context.invocation_metadata() or (), context.peer())
    return quota.hold(client)


Check = Callable[[], Awaitable[object]]


class DependencyHealth:
    """Reports SERVING only while every dependency answers its check."""

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

    async def check_once(self) -> bool:
        failing = []
        for name, check in self._checks.items():
            try:
                async with asyncio.timeout(max(self._interval, 1.0)):
                    await check()
            except Exception:
                failing.append(name)
                self._metrics.dependency_errors.labels(name).inc()
        if failing != self.failing:
            if failing:
                log.warning("dependencies not answering", extra={"failing": failing})
            else:
                log.info("all dependencies answer")
        self.failing = failing
        await self._set(not failing and not self._stopping)
        return not failing

    async def _set(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in self._names:
            await self.servicer.set(name, status)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="dependency-health")

    async def _loop(self) -> None:
        # The flag, not only cancellation, ends the loop: Python 3.11's wait_for (as
        # in a dependency's client) swallows a cancel that lands as its call finishes.
        while not self._stopping:
            await asyncio.sleep(self._interval)
            await self.check_once()

    async def shutting_down(self) -> None:
        self._stopping = True
        if self._task:
            await cancel_and_wait([self._task], STOP_STEP_SECONDS)
        await self._set(False)


Closer = Callable[[], Awaitable[None]]


@dataclass
class ServiceApp:
    """A built server with its lifecycle hooks; tests bind port 0 and read `port`."""

    server: grpc.aio.Server
    port: int
    health: DependencyHealth
    metrics: Metrics
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
        """Idempotent graceful stop: in-flight calls finish within `grace` seconds."""
        if self._stopped:
            return
        self._stopped = True
        started = time.monotonic()
        # Every step bounded: a task stuck in a dependency's client must not turn
        # SIGTERM into a hang (the orchestrator would SIGKILL us without closing
        # anything).
        await self.health.shutting_down()
        for hook in self.before_stop:
            await run_bounded(hook(), STOP_STEP_SECONDS)
        await self.server.stop(grace)
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
    quota = StreamQuota(settings.max_streams_per_client)
    server = grpc.aio.server(
        interceptors=[ErrorInterceptor(metrics, quota)], options=SERVER_OPTIONS
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
        metrics_host=settings.metrics_host,
        metrics_port=settings.metrics_port,
    )


def serve(
    name: str,
    settings: CommonSettings,
    create_server: Callable[[Any], Awaitable[ServiceApp]],
    *,
    processes: int = 1,
    young_gc_threshold: int | None = None,
) -> None:
    """The `main()` of every service: JSON logs, then run until SIGTERM.

    `processes` > 1 runs that many workers on one port (services/mesh/workers.py).
    `young_gc_threshold` tunes the cyclic GC for a long-running process: once the
    server is built, what is alive (modules, classes, connections) is frozen out
    of collections, so full ones no longer re-scan it, and a larger young
    generation lets most calls' objects die before a collection promotes them
    (measured in benchmarks/notes-intake.md and notes-fanout.md)."""
    logs.configure(name, settings.log_level)
    try:  # before touching any backend
        for key_file in (settings.jwks_file, settings.signing_key_file):
            auth.refuse_dev_key(settings.environment, key_file)
    except auth.DevKeyInProduction as e:
        raise SystemExit(f"quizmesh-{name} will not start: {e}") from None
    if processes > 1:
        if settings.grpc_port == 0:
            raise SystemExit(
                f"quizmesh-{name} will not start: QUIZMESH_PROCESSES > 1 needs a fixed "
                "QUIZMESH_GRPC_PORT (with port 0 each worker would listen on a port of its own)"
            )
        base = settings.metrics_port
        args_of = [
            (
                name,
                settings.model_copy(update={"metrics_port": base + i if base else 0}),
                create_server,
                young_gc_threshold,
            )
            for i in range(processes)
        ]
        grace = settings.shutdown_grace_seconds
        raise SystemExit(workers.supervise(name, _serve_worker, args_of, grace))

    async def build() -> ServiceApp:
        app = await create_server(settings)
        if young_gc_threshold is not None:
            gc.freeze()
            gc.set_threshold(young_gc_threshold, *gc.get_threshold()[1:])
        return app

    run(build, settings.shutdown_grace_seconds)


def _serve_worker(
    name: str,
    settings: CommonSettings,
    create_server: Callable[[Any], Awaitable[ServiceApp]],
    young_gc_threshold: int | None,
) -> None:
    serve(name, settings, create_server, young_gc_threshold=young_gc_threshold)


def run(build: Callable[[], Awaitable[ServiceApp]], grace: float) -> None:
    """Runs a service until SIGTERM/SIGINT, then stops it gracefully."""

    async def main() -> None:
        app = await build()
        await app.start()
        log.info("listening", extra={"port": app.port, "metrics_port": app.metrics_port})
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("shutting down", extra={"grace_seconds": grace})
        await app.stop(grace)

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is optional off Linux
        asyncio.run(main())
    else:
        uvloop.run(main())
