"""A graceful stop is bounded: a background task or a closing client that hangs
(a dependency that stopped answering) must not turn SIGTERM into a hang."""

from __future__ import annotations

import asyncio
import contextlib
import time

import grpc
import pytest

from services.mesh import app as mesh_app
from services.mesh.config import CommonSettings
from services.mesh.metrics import Metrics


async def test_a_stuck_background_task_or_closer_does_not_stop_the_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(mesh_app, "STOP_STEP_SECONDS", 0.3)
    settings = CommonSettings(environment="test", grpc_port=0, metrics_port=0)

    def register(server: grpc.aio.Server) -> None:
        pass

    app = mesh_app.build_server(settings, register, [], {}, Metrics("stuck"))
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
    app.before_stop.append(never_closes)
    app.after_stop += [never_closes, closes]
    await app.start()

    started = time.monotonic()
    await app.stop(0.1)

    stopped_in = time.monotonic() - started
    released.set()  # let the test's loop close

    assert stopped_in < 3.0  # three stuck steps of 0.3 s, each given up on
    assert closed == ["closed"]  # the closers after a stuck one still ran


async def test_a_dependency_check_that_completes_as_the_stop_begins_does_not_outlive_it() -> None:
    # Python 3.11's asyncio.wait_for returns normally, swallowing the cancel, when
    # the call it wraps completes just as the cancel lands; a health loop stopped
    # only by cancelling it then kept checking, and the stop waited for ever.
    settings = CommonSettings(environment="test", grpc_port=0, metrics_port=0)
    asked: asyncio.Queue[asyncio.Future[None]] = asyncio.Queue()
    checks = 0

    async def dependency_check() -> None:
        nonlocal checks
        checks += 1
        answer = asyncio.get_running_loop().create_future()
        asked.put_nowait(answer)
        await answer

    def register(server: grpc.aio.Server) -> None:
        pass

    app = mesh_app.build_server(
        settings, register, [], {"dependency": dependency_check}, Metrics("race")
    )
    start = asyncio.create_task(app.start())
    (await asked.get()).set_result(None)  # the first check, made by start()
    await start
    answer = await asked.get()  # the periodic check is waiting for its answer

    answer.set_result(None)
    started = time.monotonic()
    async with asyncio.timeout(2 * mesh_app.STOP_STEP_SECONDS):  # it used to hang
        await app.stop(0.1)  # cancels the check in the same turn of the loop
    stopped_in = time.monotonic() - started
    checks_at_stop = checks
    await asyncio.sleep(1.5)  # longer than the check interval

    assert stopped_in < mesh_app.STOP_STEP_SECONDS
    assert checks == checks_at_stop  # nothing checks dependencies after the stop
