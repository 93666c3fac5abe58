"""QUIZMESH_PROCESSES=n: a service runs n workers on one port, stops them together
on SIGTERM (what Kubernetes sends the pod's first process), and exits with an error
when one dies on its own, so the pod is restarted rather than run short."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from devstack.infra import free_port
from devstack.services import ServiceProcess, quizmesh_env
from tests.faults.processes import fault_stack, service_process
from tests.stack import Backends

WORKERS = 2


def listeners(parent: int, port: int) -> list[int]:
    """The parent's child processes that listen on `port`."""
    return [
        child.pid
        for child in psutil.Process(parent).children(recursive=True)
        if any(
            c.laddr.port == port and c.status == psutil.CONN_LISTEN
            for c in child.net_connections("tcp")
        )
    ]


async def until_listening(service: ServiceProcess, count: int) -> list[int]:
    """The first worker answers health checks before the second has bound the port."""
    assert service.pid is not None
    deadline = time.monotonic() + 30
    while len(pids := listeners(service.pid, service.port)) < count:
        assert time.monotonic() < deadline, f"{pids} listen on {service.port}"
        await asyncio.sleep(0.1)
    return pids


async def exit_code(service: ServiceProcess, within: float) -> int:
    deadline = time.monotonic() + within
    while service.returncode is None:
        assert time.monotonic() < deadline, f"{service.name} still running"
        await asyncio.sleep(0.05)
    return service.returncode


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["score", "stream"])
async def test_workers_share_one_port_and_stop_together_on_sigterm(
    backends: Backends, tmp_path: Path, name: str
) -> None:
    async with fault_stack(backends, services=()) as stack:
        settings = {**stack.common(), "grpc_port": free_port(), "processes": WORKERS}
        service = service_process(name, settings, tmp_path / f"{name}.log")
        await service.start()
        try:
            workers = await until_listening(service, WORKERS)
            assert service.pid is not None
            os.kill(service.pid, signal.SIGTERM)  # the parent only, as in a pod

            assert await exit_code(service, within=15) == 0, service.tail()
            assert not [pid for pid in workers if psutil.pid_exists(pid)]
        finally:
            await service.stop()


@pytest.mark.timeout(60)
async def test_a_worker_that_dies_takes_the_service_down_with_an_error(
    backends: Backends, tmp_path: Path
) -> None:
    async with fault_stack(backends, services=()) as stack:
        settings = {**stack.common(), "grpc_port": free_port(), "processes": WORKERS}
        service = service_process("score", settings, tmp_path / "score.log")
        await service.start()
        try:
            first, second = await until_listening(service, WORKERS)
            os.kill(first, signal.SIGKILL)

            assert await exit_code(service, within=15) == 1
            assert not psutil.pid_exists(second)
            assert "a worker exited; stopping the others" in service.tail()
        finally:
            await service.stop()


def test_several_workers_need_a_fixed_port() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "services.score.server"],
        env=quizmesh_env({"processes": 2, "grpc_port": 0, "environment": "test"}),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert "QUIZMESH_PROCESSES > 1 needs a fixed QUIZMESH_GRPC_PORT" in done.stderr
