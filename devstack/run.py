"""`quizmesh-dev` (`make run`): the whole stack on one machine.

Uses the Redis, NATS and database at QUIZMESH_REDIS_URL, QUIZMESH_NATS_URL and
QUIZMESH_DATABASE_URL (or the usual local ports) when they answer, otherwise starts
private valkey and nats servers and keeps data in SQLite; migrates the database;
starts the four services and Envoy in front of them, and keeps them running: a
process that exits on its own (a crash, a SIGKILL) is started again after a back-off
while the others keep serving. On Ctrl-C or SIGTERM it stops what it started:
services first (gracefully), then Envoy, then the servers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from devstack import infra
from devstack.gateway import (
    DEFAULT_SERVICE_PORTS,
    REPO,
    EnvoyProcess,
    GatewaySettings,
    checked_public_url,
    origins_of,
    write_envoy_config,
)
from devstack.services import ServiceProcess
from services.database.migrate import upgrade
from services.identity.keys import ensure_dev_keys
from services.mesh.config import CommonSettings
from services.mesh.dev_state import DEV_STATE_DIR
from services.sync.config import SCHEDULE, SCHEDULE_SECONDS

log = logging.getLogger("devstack")

DEFAULT_METRICS_PORTS_FROM = 9464
# What `status.json` in the state directory says, for tools and tests.
STATUS_FILE = "status.json"


@dataclass(frozen=True)
class RestartPolicy:
    """When a supervised process that exited is started again: after `first_delay`
    seconds, doubling up to `max_delay` while it keeps crashing within `stable_after`
    seconds of its start (a longer run starts the count afresh); after
    `give_up_after` such crashes in a row it stays down."""

    first_delay: float = 0.5
    max_delay: float = 10.0
    stable_after: float = 30.0
    give_up_after: int = 10

    def delay(self, attempt: int) -> float:
        """The wait before restart number `attempt` (1, 2, ...) of a crash series."""
        return float(min(self.max_delay, self.first_delay * 2 ** (attempt - 1)))


def describe_exit(code: int | None) -> str:
    """-9 -> "-9 (SIGKILL)"."""
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"{code} ({signal.Signals(-code).name})"
    return str(code)


class Supervisor:
    """Keeps one started process running: when it exits on its own it is restarted
    (same command, port and data directory) after the policy's back-off and awaited
    until ready, while the other processes keep serving. Never restarts once
    `stopping` is set; cancelling `run()` stops a restart under way, process too."""

    def __init__(
        self,
        process: infra.ManagedProcess,
        stopping: asyncio.Event,
        policy: RestartPolicy,
        *,
        on_change: Callable[[], None] = lambda: None,
        note: str = "",
    ) -> None:
        self.process = process
        self.stopping = stopping
        self.policy = policy
        self.on_change = on_change
        self.note = note  # said with each restart (what a restart loses, say)
        self.state = "running"
        self.restarts = 0
        self.last_exit: int | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        name = self.process.name
        started_at = loop.time()
        came_up = True
        attempt = 0  # restarts in the current series of quick crashes
        while True:
            code = await self.process.wait()
            if self.stopping.is_set():
                return
            self.last_exit = code
            if came_up and loop.time() - started_at >= self.policy.stable_after:
                attempt = 0
            attempt += 1
            if attempt > self.policy.give_up_after:
                await self.process.stop()  # whatever it left in its group goes too
                self.state = "gave up"
                self.on_change()
                log.error(
                    "%s exited with code %s; it crashed %d times in a row, each within "
                    "%g s of starting: giving up on it, the rest keeps serving (fix it, "
                    "then restart quizmesh-dev). Its last output:\n%s",
                    name,
                    describe_exit(code),
                    attempt,
                    self.policy.stable_after,
                    self.process.tail(20),
                )
                return
            delay = self.policy.delay(attempt)
            self.state = "restarting"
            self.on_change()
            log.warning(
                "%s exited with code %s; restart %d in %g s%s",
                name,
                describe_exit(code),
                attempt,
                delay,
                f" ({self.note})" if self.note else "",
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)
            if self.stopping.is_set():
                return
            started_at = loop.time()
            try:
                await self.process.restart()
            except Exception as error:  # never ready (ProcessFailed), or cannot run
                came_up = False
                first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
                log.warning("%s did not come back: %s", name, first_line)
                continue
            came_up = True
            self.restarts += 1
            self.state = "running"
            self.on_change()
            log.info("%s is back (pid %s, restart %d)", name, self.process.pid, attempt)


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
        "--service-ports-from",
        type=int,
        default=DEFAULT_SERVICE_PORTS["quiz"],
        metavar="PORT",
        help="gRPC ports of quiz, score, leaderboard, stream: PORT, PORT+1, ... "
        "(default %(default)s; 0: free ports chosen at start)",
    )
    parser.add_argument(
        "--metrics-ports-from",
        type=int,
        default=DEFAULT_METRICS_PORTS_FROM,
        metavar="PORT",
        help="the services' /metrics ports, in the same order (default %(default)s; "
        "0: each service takes a free one)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help=f"where the Envoy config and {STATUS_FILE} (pids, ports) are written "
        f"(default: {DEV_STATE_DIR}/)",
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
    parser.add_argument(
        "--public-url",
        default=os.environ.get("QUIZMESH_PUBLIC_URL", ""),
        help="where players open the web client, behind a proxy or at a domain (e.g. "
        "https://quiz.example.org), for the host's join link and QR code (default: "
        "$QUIZMESH_PUBLIC_URL; none: players use this machine's address on its network)",
    )
    parser.add_argument(
        "--cors-origins",
        type=origins_of,
        default=os.environ.get("QUIZMESH_CORS_ORIGINS", ""),
        metavar="ORIGIN[,ORIGIN...]",
        help="origins whose pages may call the API from a browser (CORS), e.g. "
        "http://localhost:5173 (default: $QUIZMESH_CORS_ORIGINS; none: only the web "
        "client served here)",
    )
    args = parser.parse_args(argv)
    try:
        if args.public_url:
            args.public_url = checked_public_url(args.public_url)
    except ValueError as error:
        parser.error(str(error))
    return args


# Any private address: connect() on a UDP socket only asks the kernel for a route,
# it sends nothing.
_PRIVATE_ADDRESS = ("10.254.254.254", 9)


def lan_address() -> str:
    """This machine's IPv4 address on its local network, which phones on the same
    Wi-Fi can open: the source address of the route to a private address, found
    without sending a packet. Without such a route (no network up), the hostname."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(_PRIVATE_ADDRESS)
        address = str(probe.getsockname()[0])
        if not address.startswith("127.") and address != "0.0.0.0":
            return address
    return socket.gethostname()


def players_address(port: int, public_url: str) -> str:
    """Where players' phones open the web client, for the banner: the public URL,
    else this machine's address on its network (localhost is only this machine)."""
    if public_url:
        return f"{public_url}/  (the public URL)"
    lan = f"http://{lan_address()}:{port}"
    indent = "\n" + " " * 19  # under the banner's values
    return indent.join(
        [
            f"{lan}/  (this machine on its network; for the join link",
            f"and QR code to show it, host from {lan}/#/host",
            "or set QUIZMESH_PUBLIC_URL)",
        ]
    )


def service_ports(first: int) -> dict[str, int]:
    """Each service's gRPC port: `first`, `first` + 1, ... (0: free ports, chosen now
    and kept, so that a restarted service comes back where Envoy expects it)."""
    if first == 0:
        return {name: infra.free_port() for name in DEFAULT_SERVICE_PORTS}
    return {name: first + i for i, name in enumerate(DEFAULT_SERVICE_PORTS)}


def metrics_ports(first: int) -> dict[str, int]:
    """Each service's /metrics port: quiz 9464, score 9465, leaderboard 9466, stream
    9467 by default (0: each takes a free one when it starts)."""
    return {name: first + i if first else 0 for i, name in enumerate(DEFAULT_SERVICE_PORTS)}


def service_env(
    port: int,
    metrics_port: int,
    redis_url: str,
    nats_url: str,
    database_url: str,
    settings: CommonSettings,
) -> dict[str, str]:
    return {
        **os.environ,
        "QUIZMESH_ENVIRONMENT": os.environ.get("QUIZMESH_ENVIRONMENT", "development"),
        "QUIZMESH_GRPC_HOST": "127.0.0.1",
        "QUIZMESH_GRPC_PORT": str(port),
        "QUIZMESH_METRICS_PORT": str(metrics_port),
        "QUIZMESH_REDIS_URL": redis_url,
        "QUIZMESH_NATS_URL": nats_url,
        "QUIZMESH_DATABASE_URL": database_url,
        "QUIZMESH_JWKS_FILE": str(settings.jwks_file.resolve()),
        "QUIZMESH_SIGNING_KEY_FILE": str(settings.signing_key_file.resolve()),
        "PYTHONUNBUFFERED": "1",
    }


def busy_ports(ports: Mapping[str, int]) -> list[str]:
    # The services bind with SO_REUSEPORT: a leftover from an earlier run would
    # silently share the port, so refuse to start instead (port 0: any free one).
    return [
        f"{name} ({port})" for name, port in ports.items() if port and not infra.port_is_free(port)
    ]


class DevStack:
    """What `quizmesh-dev` started, so that it can stop exactly that; once started,
    a Supervisor per process keeps it running until `stopping` is set."""

    def __init__(
        self,
        args: argparse.Namespace,
        settings: CommonSettings,
        *,
        stopping: asyncio.Event | None = None,
        policy: RestartPolicy | None = None,
    ) -> None:
        self.args = args
        self.settings = settings
        self.stopping = stopping if stopping is not None else asyncio.Event()
        self.policy = policy or RestartPolicy()
        self.service_ports = service_ports(args.service_ports_from)
        self.metrics_ports = metrics_ports(args.metrics_ports_from)
        self.state_dir: Path = args.state_dir or DEV_STATE_DIR
        self.servers: list[infra.PrivateServer] = []
        self.services: list[ServiceProcess] = []
        self.envoy: EnvoyProcess | None = None
        self.sync_task: asyncio.Task[None] | None = None
        self.supervisors: dict[str, Supervisor] = {}
        self.supervising: list[asyncio.Task[None]] = []
        self.state = "starting"
        self.redis_url = settings.redis_url
        self.nats_url = settings.nats_url
        self.database_url = infra.DEFAULT_SQLITE_URL

    def log_file(self, name: str) -> Path | None:
        return self.args.log_dir / f"{name}.log" if self.args.log_dir else None

    def ports(self) -> dict[str, int]:
        """The fixed ports this stack binds (checked before it starts)."""
        return {
            **self.service_ports,
            **{f"{name} metrics": port for name, port in self.metrics_ports.items()},
            "envoy": self.args.port,
            "envoy admin": self.args.admin_port,
            "envoy stats": self.args.stats_port,
        }

    async def start(self) -> None:
        self.write_status()
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
                service_env(
                    port,
                    self.metrics_ports[name],
                    self.redis_url,
                    self.nats_url,
                    self.database_url,
                    self.settings,
                ),
                self.log_file(name),
            )
            for name, port in self.service_ports.items()
        ]
        await asyncio.gather(*(service.start() for service in self.services))

        config = write_envoy_config(
            self.state_dir / "envoy.yaml",
            GatewaySettings(
                upstreams={name: f"127.0.0.1:{port}" for name, port in self.service_ports.items()},
                listen_port=self.args.port,
                admin_port=self.args.admin_port,
                stats_port=self.args.stats_port,
                jwks_path=self.settings.jwks_file,
                web_root=self.args.web_root,
                public_url=self.args.public_url,
                cors_origins=self.args.cors_origins,
            ),
        )
        self.envoy = EnvoyProcess(config, log_file=self.log_file("envoy"))
        await self.envoy.start()
        self.sync_task = asyncio.create_task(self.sync_on_schedule())
        self.supervise()

    def supervise(self) -> None:
        """One Supervisor per process started here (services, Envoy, private servers)."""
        notes = {
            "valkey": "valkey keeps no data: live quizzes lose their state; "
            "`quizctl recover QUIZ` rebuilds one",
        }
        for process in self.processes():
            supervisor = Supervisor(
                process,
                self.stopping,
                self.policy,
                on_change=self.write_status,
                note=notes.get(process.name, ""),
            )
            self.supervisors[process.name] = supervisor
            self.supervising.append(
                asyncio.create_task(supervisor.run(), name=f"supervise {process.name}")
            )
        self.state = "running"
        self.write_status()

    def status(self) -> dict[str, Any]:
        processes: dict[str, Any] = {}
        for process in self.processes():
            supervisor = self.supervisors.get(process.name)
            processes[process.name] = {
                "pid": process.pid if process.running else None,
                "state": supervisor.state
                if supervisor and self.state == "running"
                else ("running" if process.running else "stopped"),
                "restarts": supervisor.restarts if supervisor else 0,
                "last_exit": supervisor.last_exit if supervisor else None,
            }
        return {
            "pid": os.getpid(),
            "state": self.state,
            "ports": {
                **self.service_ports,
                "envoy": self.envoy.port if self.envoy and self.envoy.port else self.args.port,
                "envoy admin": self.args.admin_port,
                "envoy stats": self.args.stats_port,
            },
            "processes": processes,
        }

    def write_status(self) -> None:
        """`status.json` in the state directory: this run's state and each process's
        pid, state (running, restarting, gave up, stopped) and restart count."""
        path = self.state_dir / STATUS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        partial.write_text(json.dumps(self.status(), indent=2) + "\n")
        partial.replace(path)  # readers never see half a file

    async def sync_on_schedule(self) -> None:
        """The sync job, on the CronJob's schedule (`SCHEDULE`), as a separate process."""
        env = service_env(0, 0, self.redis_url, self.nats_url, self.database_url, self.settings)
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

    async def end_supervision(self) -> None:
        """No restart from here on, and none left half done (a cancelled restart
        stops the process it was starting)."""
        self.stopping.set()
        for task in self.supervising:
            task.cancel()
        await asyncio.gather(*self.supervising, return_exceptions=True)

    async def stop(self, hurry: asyncio.Event) -> None:
        """Services first (they finish in-flight calls and end streams), then Envoy,
        then the servers started here; `hurry` kills whatever is left."""
        log.info("stopping (Ctrl-C again to kill)")
        self.stopping.set()  # before anything is stopped: no supervisor restarts it
        self.state = "stopping"
        self.write_status()
        if self.sync_task is not None:
            self.sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.sync_task

        async def graceful() -> None:
            await self.end_supervision()
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
            await self.end_supervision()
            for process in self.processes():
                await process.kill()
            for server in self.servers:
                await server.close()
        self.state = "stopped"
        self.write_status()

    def banner(self) -> str:
        assert self.envoy is not None
        args = self.args
        api = f"http://127.0.0.1:{self.envoy.port}"
        host = f"localhost:{self.envoy.port}"
        started = {server.name for server in self.servers}
        logs = f"in {args.log_dir}/<name>.log" if args.log_dir else "below, prefixed by name"
        services = ", ".join(f"{name} :{port}" for name, port in self.service_ports.items())
        web = f"{api}/  (hosts: {api}/#/host)" if args.web_root else "(none: no web/ directory)"
        phones = players_address(self.envoy.port, args.public_url) if args.web_root else "-"
        database = make_url(self.database_url).render_as_string(hide_password=True)
        if all(self.metrics_ports.values()):
            (first, first_port), *rest = self.metrics_ports.items()
            metrics = f"http://127.0.0.1:{first_port}/metrics ({first}), " + ", ".join(
                f"{port} {name}" for name, port in rest
            )
        else:
            metrics = "free ports (each service logs its own)"
        quiz = (
            '{"title":"Demo","questions":[{"text":"2+2?","choices":["3","4"],"correct_choice":1}]}'
        )
        return f"""
QuizMesh is running.
  API (HTTP/JSON, SSE, gRPC): {api}
  web client:      {web}
  players' phones: {phones}
  Envoy admin:     {self.envoy.admin_url}
  services (gRPC): {services}
  metrics:  {metrics},
            http://127.0.0.1:{self.envoy.stats_port}/stats/prometheus (Envoy)
  Redis:    {self.redis_url} ({"started here" if "valkey" in started else "configured"})
  NATS:     {self.nats_url} ({"started here" if "nats" in started else "configured"})
  database: {database}
  sync job: every {SCHEDULE_SECONDS} s, as the CronJob ({SCHEDULE!r})
  logs:     {logs}
  restarts: a process that exits is started again ({self.state_dir / STATUS_FILE})

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
    shutdown = Shutdown()
    # A process that exits on its own is restarted, until Ctrl-C/SIGTERM.
    stack = DevStack(args, settings, stopping=shutdown.requested)
    busy = busy_ports(stack.ports())
    if busy:
        log.error("ports in use: %s; is another quizmesh-dev running?", ", ".join(busy))
        return 1

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, shutdown)

    asked = asyncio.create_task(shutdown.requested.wait())
    try:
        # Ctrl-C while starting stops the start-up too.
        starting = asyncio.create_task(stack.start())
        await asyncio.wait([starting, asked], return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            await _cancelled_start(starting, stack, shutdown.hurry)
            return 130
        if (error := starting.exception()) is not None:
            if isinstance(error, infra.ProcessFailed):
                log.error("%s", error)
                return 1
            raise error
        print(stack.banner(), flush=True)
        await asked  # meanwhile the supervisors keep every process running
        return 0
    finally:
        asked.cancel()
        await stack.stop(shutdown.hurry)


async def _cancelled_start(
    starting: asyncio.Task[None], stack: DevStack, hurry: asyncio.Event
) -> None:
    """Waits for a cancelled start-up, which stops what it was starting; a second
    Ctrl-C kills what was already started instead."""
    hurried = asyncio.create_task(hurry.wait())
    try:
        await asyncio.wait([starting, hurried], return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            for process in stack.processes():
                await process.kill()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
    finally:
        hurried.cancel()


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    for option in ("web_root", "log_dir", "state_dir"):
        if getattr(args, option) is not None:
            setattr(args, option, getattr(args, option).resolve())
    logging.basicConfig(level=logging.INFO, format="   devstack | %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Envoy readiness polls
    # Relative paths (keys, SQLite file, envoy.yaml) mean the same as for the services.
    os.chdir(REPO)
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
