"""The `main()` of every service: settings read and checked, JSON logs, optional
worker processes, then run until SIGTERM and stop gracefully."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pydantic

from services.mesh import logs, workers
from services.mesh.app import ServiceApp
from services.mesh.config import CommonSettings

log = logging.getLogger(__name__)

S = TypeVar("S", bound=CommonSettings)


def main(
    name: str,
    settings_type: type[S],
    create_server: Callable[[S], Awaitable[ServiceApp]],
    *,
    young_gc_threshold: int | None = None,
) -> None:
    """Reads the service's settings (a refusal, e.g. a development key in production,
    ends it with one clear line before any backend is touched) and serves.

    `young_gc_threshold` tunes the cyclic GC for a long-running process: once the
    server is built, what is alive (modules, classes, connections) is frozen out
    of collections, so full ones no longer re-scan it, and a larger young
    generation lets most calls' objects die before a collection promotes them
    (measured in benchmarks/notes-intake.md and notes-fanout.md)."""
    try:
        settings = settings_type()
    except pydantic.ValidationError as e:
        problems = "; ".join(
            str(error["msg"]).removeprefix("Value error, ") for error in e.errors()
        )
        raise SystemExit(f"quizmesh-{name} will not start: {problems}") from None
    serve(name, settings, create_server, young_gc_threshold)


def serve(
    name: str,
    settings: S,
    create_server: Callable[[S], Awaitable[ServiceApp]],
    young_gc_threshold: int | None,
) -> None:
    """Runs the service; with QUIZMESH_PROCESSES > 1 as that many workers on one
    port (services/mesh/workers.py), worker i serving /metrics on its port + i."""
    logs.configure(name, settings.log_level)
    if settings.processes > 1:
        if settings.grpc_port == 0:
            raise SystemExit(
                f"quizmesh-{name} will not start: QUIZMESH_PROCESSES > 1 needs a fixed "
                "QUIZMESH_GRPC_PORT (with port 0 each worker would listen on a port of its own)"
            )
        base = settings.metrics_port
        args_of = [
            (
                name,
                settings.model_copy(
                    update={"metrics_port": base + i if base else 0, "processes": 1}
                ),
                create_server,
                young_gc_threshold,
            )
            for i in range(settings.processes)
        ]
        grace = settings.shutdown_grace_seconds
        raise SystemExit(workers.supervise(name, serve, args_of, grace))

    async def build() -> ServiceApp:
        app = await create_server(settings)
        if young_gc_threshold is not None:
            gc.freeze()
            gc.set_threshold(young_gc_threshold, *gc.get_threshold()[1:])
        return app

    run(build, settings.shutdown_grace_seconds)


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
