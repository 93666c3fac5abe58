"""Processes a fault test runs and kills: an in-process stack, services, sync runs."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.services import ServiceProcess, quizmesh_env
from tests.stack import Backends, Stack, forget, start_service

REPO = Path(__file__).resolve().parents[2]
ALL_SERVICES = ("quiz", "score", "leaderboard", "stream")


@contextlib.asynccontextmanager
async def fault_stack(
    backends: Backends, services: Iterable[str] = ALL_SERVICES, **overrides: Any
) -> AsyncIterator[Stack]:
    """Like tests.stack.running_stack, but only `services` run in-process (a test
    runs the others as processes it can kill) and `backends` may be private servers."""
    tag = uuid.uuid4().hex[:10]
    stack = Stack(backends, key_prefix=f"f{tag}:", nats_prefix=f"f{tag}")
    try:
        for name in services:
            await start_service(stack, name, **overrides)
        yield stack
    finally:
        for app in stack.apps.values():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(app.stop(1.0), 15)
        for channel in stack.channels.values():
            await channel.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(forget(backends, stack.key_prefix, stack.nats_prefix), 15)


def replace_backends(backends: Backends, **changes: Any) -> Backends:
    """The same backends with some servers swapped (a private Redis or NATS)."""
    return dataclasses.replace(backends, **changes)


def service_process(name: str, settings: Mapping[str, Any], log_file: Path) -> ServiceProcess:
    """`python -m services.<name>.server` with these settings, on their fixed port: a
    restart keeps the address the clients know, as a restarted pod keeps its Service."""
    return ServiceProcess.from_settings(
        name, settings, log_file, ready_timeout=30.0, stop_grace=5.0
    )


def sync_settings(stack: Stack, **overrides: Any) -> dict[str, Any]:
    """The sync job's settings for a test's stack: closed quizzes become final at once."""
    return {
        **stack.common(),
        "sync_final_grace_seconds": 0,
        **overrides,
    }


@dataclass(frozen=True)
class SyncResult:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def describe(self) -> str:
        return (
            f"quizmesh-sync exited {self.returncode} after {self.seconds:.1f} s\n"
            f"--- stderr ---\n{self.stderr[-4000:]}\n--- stdout ---\n{self.stdout[-2000:]}"
        )


class SyncCommand:
    """One run of the sync job as a CronJob would start it: `python -m services.sync`
    with QUIZMESH_* settings; stdout and stderr kept apart."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.env = quizmesh_env(settings)
        self._process: asyncio.subprocess.Process | None = None
        self._output: asyncio.Future[tuple[bytes, bytes]] | None = None
        self._started = 0.0

    async def start(self) -> None:
        self._started = time.monotonic()
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.sync",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
            cwd=REPO,
            start_new_session=True,
        )
        self._output = asyncio.ensure_future(self._process.communicate())

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def kill(self) -> SyncResult:
        """SIGKILL, as an evicted pod or an OOM kill would end it."""
        assert self._process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGKILL)
        return await self.wait()

    async def wait(self, within: float = 60.0) -> SyncResult:
        assert self._process is not None
        assert self._output is not None
        try:
            out, err = await asyncio.wait_for(asyncio.shield(self._output), within)
        except TimeoutError:
            await self.kill()
            raise AssertionError(f"the sync job did not finish within {within:g} s") from None
        return SyncResult(
            returncode=self._process.returncode if self._process.returncode is not None else -1,
            stdout=out.decode(errors="replace"),
            stderr=err.decode(errors="replace"),
            seconds=time.monotonic() - self._started,
        )

    async def run(self, within: float = 60.0) -> SyncResult:
        await self.start()
        return await self.wait(within)


async def sync_to_sql(stack: Stack, **overrides: Any) -> SyncResult:
    """One successful sync run of the stack's answers into its database."""
    result = await SyncCommand(sync_settings(stack, **overrides)).run()
    assert result.returncode == 0, result.describe()
    return result
