"""`quizmesh-sync`: one run of the Redis/JetStream -> SQL sync (the CronJob's command).

Exit status: 0 done; 2 the database failed; 3 NATS failed; 1 anything else. Every
failure is safe to retry: the next run starts from the last committed checkpoint.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Coroutine
from typing import Any

import nats.errors
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from services.mesh import logs
from services.sync.config import Settings
from services.sync.job import SyncReport, run_sync

log = logging.getLogger("services.sync")

DATABASE_FAILED = 2
NATS_FAILED = 3


def run(job: Coroutine[Any, Any, SyncReport]) -> SyncReport:
    """On uvloop when installed, as the services run: its transport cuts the cost of
    reading a JetStream backlog message by message."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is optional off Linux
        return asyncio.run(job)
    return uvloop.run(job)


def failure_of(e: BaseException, settings: Settings) -> tuple[int, str] | None:
    """The exit status and message of a dependency's failure, by which client
    library raised it; None for anything else (a bug)."""
    if isinstance(e, (OperationalError, DBAPIError)):
        database = make_url(settings.database_url).render_as_string(hide_password=True)
        return DATABASE_FAILED, f"the database at {database} did not answer: {e}"
    if isinstance(e, nats.errors.Error):
        servers = settings.nats_url.removeprefix("nats://")
        return NATS_FAILED, f"NATS at {servers} did not answer: {e}"
    return None


def main() -> None:
    settings = Settings()
    logs.configure("sync", settings.log_level)
    started = time.monotonic()
    try:
        report = run(run_sync(settings))
    except Exception as e:
        failure = failure_of(e, settings)
        if failure is None:
            message = f"sync failed: {e!r}"
            log.exception(message)
            print(message, file=sys.stderr)
            sys.exit(1)
        code, said = failure
        message = f"sync failed: {said}"
        log.error(message)
        print(message, file=sys.stderr)
        sys.exit(code)
    log.info(
        "sync done",
        extra={
            "answers": report.answers,
            "batches": report.batches,
            "checkpoint": report.checkpoint,
            "quizzes_finalized": report.quizzes_finalized,
            "seconds": round(time.monotonic() - started, 3),
        },
    )


if __name__ == "__main__":
    main()
