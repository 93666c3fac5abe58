"""`quizmesh-dev` (`make run`): the whole stack on one machine.

Uses the Redis, NATS and database at QUIZMESH_REDIS_URL, QUIZMESH_NATS_URL and
QUIZMESH_DATABASE_URL (or the usual local ports) when they answer, otherwise starts
private valkey and nats servers and keeps data in SQLite; migrates the database;
starts the four services and Envoy in front of them; on Ctrl-C or SIGTERM stops
what it started: services first (gracefully), then Envoy, then the servers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy.engine import make_url

from devstack import infra
from devstack.gateway import (
    DEFAULT_SERVICE_PORTS,
    REPO,
    EnvoyProcess,
    GatewaySettings,
    write_envoy_config,
)
from services.database.migrate import upgrade
from services.identity.keys import ensure_dev_keys
from services.mesh.config import CommonSettings
from services.mesh.dev_state import DEV_STATE_DIR
from services.sync.config import SCHEDULE, SCHEDULE_SECONDS

log = logging.getLogger("devstack")

# Services finish in-flight calls within their own grace period (10 s by default).
SERVICE_STOP_GRACE = 15.0


class ServiceProcess(infra.ManagedProcess):
    """`python -m services.<name>.server`, ready once grpc.health.v1 says SERVING
    (which a service reports only after its dependencies answer)."""

    def __init__(self, name: str, port: int, env: Mapping[str, str], log_file: Path | None) -> None:
        super().__init__(
            name,
            [sys.executable, "-m", f"services.{name}.server"],
            env=env,
            cwd=REPO,
            log_file=log_file,
            ready_timeout=60.0,
            stop_grace=SERVICE_STOP_GRACE,
        )
        self.port = port

    async def ready(self) -> bool:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            try:
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=1.0
                )
            except grpc.aio.AioRpcError:
                return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


class Shutdown:
    """The first Ctrl-C/SIGTERM asks for a graceful stop, the second for a fast one."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.hurry = asyncio.Event()

    def __call__(self) -> None:
        if self.requested.is_set():
            self.hurry.set()
        self.requested.set()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    default_web = REPO / "web"
    parser = argparse.ArgumentParser(prog="quizmesh-dev", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8080, help="public (Envoy) port")
    parser.add_argument("--admin-port", type=int, default=9901, help="Envoy admin port")
    parser.add_argument(
        "--stats-port", type=int, default=9468, help="Envoy's /stats/prometheus (only) port"
    )
    parser.add_argument(
        "--web-root",
        type=Path,
        default=default_web if default_web.is_dir() else None,
        help="directory served at / (default: web/ when it exists)",
    )
    parser.add_argument(
        "--log-dir",
        type=Path,
        default=None,
        help="write each process's output to <dir>/<name>.log instead of the terminal",
    )
    return parser.parse_args(argv)


def service_env(
    port: int, redis_url: str, nats_url: str, database_url: str, settings: CommonSettings
) -> dict[str, str]:
    return {
        **os.environ,
        "QUIZMESH_ENVIRONMENT": os.environ.get("QUIZMESH_ENVIRONMENT", "development"),
        "QUIZMESH_GRPC_HOST": "127.0.0.1",
        "QUIZMESH_GRPC_PORT": str(port),
        # quiz 50051 -> metrics 9464, score 9465, leaderboard 9466, stream 9467
        "QUIZMESH_METRICS_PORT": str(9464 + port - 50051) if port else "0",
        "QUIZMESH_REDIS_URL": redis_url,
        "QUIZMESH_NATS_URL": nats_url,
        "QUIZMESH_DATABASE_URL": database_url,
        "QUIZMESH_JWKS_FILE": str(settings.jwks_file.resolve()),
        "QUIZMESH_SIGNING_KEY_FILE": str(settings.signing_key_file.resolve()),
        "PYTHONUNBUFFERED": "1",
    }


def busy_ports(ports: Mapping[str, int]) -> list[str]:
    # The services bind with SO_REUSEPORT: a leftover from an earlier run would
    # silently share the port, so refuse to start instead.
    return [f"{name} ({port})" for name, port in ports.items() if not infra.port_is_free(port)]


class DevStack:
    """What `quizmesh-dev` started, so that it can stop exactly that."""

    def __init__(self, args: argparse.Namespace, settings: CommonSettings) -> None:
        self.args = args
        self.settings = settings
        self.servers: list[infra.PrivateServer] = []
        self.services: list[ServiceProcess] = []
        self.envoy: EnvoyProcess | None = None
        self.sync_task: asyncio.Task[None] | None = None
        self.redis_url = settings.redis_url
        self.nats_url = settings.nats_url
        self.database_url = infra.DEFAULT_SQLITE_URL

    def log_file(self, name: str) -> Path | None:
        return self.args.log_dir / f"{name}.log" if self.args.log_dir else None

    async def start(self) -> None:
        self.redis_url, redis = await infra.ensure_redis(self.settings.redis_url)
        if redis is not None:
            self.servers.append(redis)
        self.nats_url, nats = await infra.ensure_nats(self.settings.nats_url)
        if nats is not None:
            self.servers.append(nats)
        self.database_url = await infra.choose_database(os.environ.get("QUIZMESH_DATABASE_URL"))
        await upgrade(self.database_url)

        self.services = [
            ServiceProcess(
                name,
                port,
                service_env(port, self.redis_url, self.nats_url, self.database_url, self.settings),
                self.log_file(name),
            )
            for name, port in DEFAULT_SERVICE_PORTS.items()
        ]
        await asyncio.gather(*(service.start() for service in self.services))

        config = write_envoy_config(
            DEV_STATE_DIR / "envoy.yaml",
            GatewaySettings(
                upstreams={
                    name: f"127.0.0.1:{port}" for name, port in DEFAULT_SERVICE_PORTS.items()
                },
                listen_port=self.args.port,
                admin_port=self.args.admin_port,
                stats_port=self.args.stats_port,
                jwks_path=self.settings.jwks_file,
                web_root=self.args.web_root,
            ),
        )
        self.envoy = EnvoyProcess(config, log_file=self.log_file("envoy"))
        await self.envoy.start()
        self.sync_task = asyncio.create_task(self.sync_on_schedule())

    async def sync_on_schedule(self) -> None:
        """The sync job, on the CronJob's schedule (`SCHEDULE`), as a separate process."""
        env = service_env(0, self.redis_url, self.nats_url, self.database_url, self.settings)
        while True:
            await asyncio.sleep(SCHEDULE_SECONDS)
            job = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "services.sync", env=env
            )
            try:
                if await job.wait() != 0:
                    log.warning("sync run failed (exit %s); the next run retries", job.returncode)
            except asyncio.CancelledError:
                job.kill()  # safe: a killed run rolls back to its last checkpoint
                await job.wait()
                raise

    def processes(self) -> list[infra.ManagedProcess]:
        return [*self.services, *([self.envoy] if self.envoy else []), *self.servers]

    async def stop(self, hurry: asyncio.Event) -> None:
        """Services first (they finish in-flight calls and end streams), then Envoy,
        then the servers started here; `hurry` kills whatever is left."""
        log.info("stopping (Ctrl-C again to kill)")
        if self.sync_task is not None:
            self.sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.sync_task

        async def graceful() -> None:
            await asyncio.gather(*(service.stop() for service in self.services))
            if self.envoy is not None:
                await self.envoy.stop()
            for server in self.servers:
                await server.close()

        stopping = asyncio.create_task(graceful())
        hurried = asyncio.create_task(hurry.wait())
        await asyncio.wait([stopping, hurried], return_when=asyncio.FIRST_COMPLETED)
        hurried.cancel()
        if not stopping.done():
            stopping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stopping
            for process in self.processes():
                await process.kill()
            for server in self.servers:
                await server.close()

    def banner(self) -> str:
        assert self.envoy is not None
        args = self.args
        api = f"http://127.0.0.1:{self.envoy.port}"
        host = f"localhost:{self.envoy.port}"
        started = {server.name for server in self.servers}
        logs = f"in {args.log_dir}/<name>.log" if args.log_dir else "below, prefixed by name"
        services = ", ".join(f"{name} :{port}" for name, port in DEFAULT_SERVICE_PORTS.items())
        web = f"{api}/  (hosts: {api}/#/host)" if args.web_root else "(none: no web/ directory)"
        database = make_url(self.database_url).render_as_string(hide_password=True)
        quiz = (
            '{"title":"Demo","questions":[{"text":"2+2?","choices":["3","4"],"correct_choice":1}]}'
        )
        return f"""
QuizMesh is running.
  API (HTTP/JSON, SSE, gRPC): {api}
  web client:      {web}
  Envoy admin:     {self.envoy.admin_url}
  services (gRPC): {services}
  metrics:  http://127.0.0.1:9464/metrics (quiz), 9465 score, 9466 leaderboard, 9467 stream,
            http://127.0.0.1:{self.envoy.stats_port}/stats/prometheus (Envoy)
  Redis:    {self.redis_url} ({"started here" if "valkey" in started else "configured"})
  NATS:     {self.nats_url} ({"started here" if "nats" in started else "configured"})
  database: {database}
  sync job: every {SCHEDULE_SECONDS} s, as the CronJob ({SCHEDULE!r})
  logs:     {logs}

Try it from another terminal:
  HOST=$(.venv/bin/quizctl token --role host --subject alice)
  curl -s {host}/v1/quizzes -H "authorization: Bearer $HOST" -d '{quiz}'
  curl -s {host}/v1/quizzes                            # list quizzes
  curl -s -X POST {host}/v1/quizzes/QUIZ_ID:join -d '{{"nickname":"ann"}}'
  curl -N {host}/v1/quizzes/QUIZ_ID/events:watch       # live events (SSE)
  curl -N {host}/v1/quizzes/QUIZ_ID/leaderboard:watch  # live leaderboard (SSE)

Ctrl-C stops everything started here.
"""


async def run(args: argparse.Namespace) -> int:
    settings = CommonSettings()
    ensure_dev_keys(settings.signing_key_file, settings.jwks_file)
    busy = busy_ports(
        {
            **DEFAULT_SERVICE_PORTS,
            "envoy": args.port,
            "envoy admin": args.admin_port,
            "envoy stats": args.stats_port,
        }
    )
    if busy:
        log.error("ports in use: %s; is another quizmesh-dev running?", ", ".join(busy))
        return 1

    shutdown = Shutdown()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, shutdown)

    stack = DevStack(args, settings)
    asked = asyncio.create_task(shutdown.requested.wait())
    try:
        # Ctrl-C while starting stops the start-up too.
        starting = asyncio.create_task(stack.start())
        await asyncio.wait([starting, asked], return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            return 130
        if (error := starting.exception()) is not None:
            if isinstance(error, infra.ProcessFailed):
                log.error("%s", error)
                return 1
            raise error
        print(stack.banner(), flush=True)

        # Until asked to stop, or until a process dies on its own.
        exits = [asyncio.create_task(p.wait()) for p in stack.processes()]
        await asyncio.wait([asked, *exits], return_when=asyncio.FIRST_COMPLETED)
        for task in exits:
            task.cancel()
        died = [p for p in stack.processes() if not p.running]
        for process in died:
            log.error("%s exited with code %s", process.name, process.returncode)
        return 1 if died else 0
    finally:
        asked.cancel()
        await stack.stop(shutdown.hurry)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    for option in ("web_root", "log_dir"):
        if getattr(args, option) is not None:
            setattr(args, option, getattr(args, option).resolve())
    logging.basicConfig(level=logging.INFO, format="   devstack | %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Envoy readiness polls
    # Relative paths (keys, SQLite file, envoy.yaml) mean the same as for the services.
    os.chdir(REPO)
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
