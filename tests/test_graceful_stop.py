"""A graceful stop is bounded: a background task or a closing client that hangs
(a dependency that stopped answering) must not turn SIGTERM into a hang."""

from __future__ import annotations

import asyncio
import contextlib
import time

import grpc
import pytest

from services.core import runtime
from services.core.config import CommonSettings
from services.core.metrics import Metrics


async def test_a_stuck_background_task_and_closer_do_not_stop_the_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runtime, "STOP_STEP_SECONDS", 0.3)
    settings = CommonSettings(environment="test", grpc_port=0, metrics_port=0)

    def register(server: grpc.aio.Server) -> None:
        pass

    app = runtime.build_server(settings, register, [], {}, Metrics("stuck"))
    closed: list[str] = []
    released = asyncio.Event()

    async def ignores_cancellation() -> None:
        while not released.is_set():
            # As a client library stuck in a retry loop might.
            with contextlib.suppress(asyncio.CancelledError):
                await released.wait()

    async def never_closes() -> None:
        await asyncio.Event().wait()

    async def closes() -> None:
        closed.append("closed")

    app.background.append(ignores_cancellation)
    app.after_stop += [never_closes, closes]
    await app.start()

    started = time.monotonic()
    await app.stop(0.1)

    stopped_in = time.monotonic() - started
    released.set()  # let the test's loop close

    assert stopped_in < 3.0
    assert closed == ["closed"]  # the closers after a stuck one still ran
