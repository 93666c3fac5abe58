"""Ending background tasks without trusting them to end."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable

log = logging.getLogger(__name__)


async def cancel_and_wait(tasks: Iterable[asyncio.Task[object]], seconds: float) -> bool:
    """Cancels `tasks` and waits at most `seconds` for them to end; True if they all did.

    Bounded because a cancel can be swallowed: Python 3.11's `asyncio.wait_for`
    (used inside redis-py and nats-py) returns normally when the cancel lands just as
    the call it wraps completes, and a loop around such a call then never ends."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    if not tasks:
        return True
    done, stuck = await asyncio.wait(tasks, timeout=seconds)
    for task in done:
        if not task.cancelled():
            task.exception()  # retrieved: an error while ending is not worth a warning
    for task in stuck:
        log.warning(
            "task did not end when cancelled",
            extra={"task": task.get_name(), "stack": _where(task)},
        )
    return not stuck


def _where(task: asyncio.Task[object]) -> str:
    frames = task.get_stack(limit=1)
    if not frames:
        return "?"
    code = frames[-1].f_code
    return f"{code.co_filename}:{frames[-1].f_lineno} in {code.co_name}"


async def run_bounded(step: Awaitable[object], seconds: float) -> bool:
    """Runs `step` for at most `seconds` (then cancels it, see `cancel_and_wait`);
    True if it finished without an error. An error is logged, not raised: one
    closing step that fails must not skip the next."""
    name = getattr(step, "__qualname__", repr(step))
    task = asyncio.ensure_future(step)
    done, _ = await asyncio.wait([task], timeout=seconds)
    if not done:
        log.warning("step did not finish in time", extra={"step": name, "at": _where(task)})
        await cancel_and_wait([task], seconds)
        return False
    if task.exception() is not None:
        log.warning("step failed", extra={"step": name, "error": repr(task.exception())})
        return False
    return True
