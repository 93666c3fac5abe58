"""A QuizMesh service as a child process: `python -m services.<name>.server` with a
given environment, on a fixed gRPC port (a restart keeps the address its clients
know, as a restarted pod keeps its Service), ready once grpc.health.v1 says SERVING
(which a service reports only after its dependencies answer).

`make run` (devstack/run.py), the benchmarks and the fault tests start services
this way; `quizmesh_env` turns settings into the QUIZMESH_* variables they read.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from devstack import infra
from devstack.gateway import REPO
from services.mesh.health_client import health_status

# Services finish in-flight calls within their own grace period (10 s by default).
SERVICE_STOP_GRACE = 15.0
SERVICE_READY_TIMEOUT = 60.0


def quizmesh_env(
    settings: Mapping[str, Any], base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """`base` (default: our environment) without its QUIZMESH_* variables, plus
    `settings` as QUIZMESH_<NAME> variables (values through str(), so paths work)."""
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items() if not k.startswith("QUIZMESH_")}
    env.update({f"QUIZMESH_{name.upper()}": str(value) for name, value in settings.items()})
    return env


class ServiceProcess(infra.ManagedProcess):
    """`python -m services.<name>.server` with `env` (which must put its gRPC port,
    QUIZMESH_GRPC_PORT, at `port`); ready once grpc.health.v1 at `port` says SERVING."""

    def __init__(
        self,
        name: str,
        port: int,
        env: Mapping[str, str],
        log_file: Path | None = None,
        *,
        cwd: Path = REPO,
        host: str = "127.0.0.1",
        ready_timeout: float = SERVICE_READY_TIMEOUT,
        stop_grace: float = SERVICE_STOP_GRACE,
    ) -> None:
        super().__init__(
            name,
            [sys.executable, "-m", f"services.{name}.server"],
            env=env,
            cwd=cwd,
            log_file=log_file,
            ready_timeout=ready_timeout,
            stop_grace=stop_grace,
        )
        self.port = port
        self.host = host

    @classmethod
    def from_settings(
        cls,
        name: str,
        settings: Mapping[str, Any],
        log_file: Path | None = None,
        *,
        base_env: Mapping[str, str] | None = None,
        **options: Any,
    ) -> ServiceProcess:
        """The service with `settings` (its fields: grpc_port, redis_url, ...) as its
        only QUIZMESH_* variables; `settings["grpc_port"]` must be a fixed port."""
        port = int(settings["grpc_port"])
        if port == 0:
            raise ValueError(f"{name}: a service process needs a fixed grpc_port, not 0")
        return cls(name, port, quizmesh_env(settings, base_env), log_file, **options)

    @property
    def target(self) -> str:
        """The service's gRPC address, for clients."""
        return f"{self.host}:{self.port}"

    async def ready(self) -> bool:
        try:
            async with grpc.aio.insecure_channel(self.target) as channel:
                status = await health_status(channel, seconds=1.0)
        except grpc.aio.AioRpcError:
            return False
        return status == health_pb2.HealthCheckResponse.SERVING
