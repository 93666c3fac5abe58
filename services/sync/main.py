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

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from services.mesh import logs
from services.sync.config import Settings
from services.sync.job import SyncReport, run_sync

log = logging.getLogger("services.sync")


def run(job: Coroutine[Any, Any, SyncReport]) -> SyncReport:
    """On uvloop when installed, as the services run: its transport cuts the cost of
    reading a JetStream backlog message by message."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is optional off Linux
        return asyncio.run(job)
    return uvloop.run(job)


def main() -> None:
    settings = Settings()
    logs.configure("sync", settings.log_level)
    started = time.monotonic()
    database = make_url(settings.database_url).render_as_string(hide_password=True)
    try:
        report = run(run_sync(settings))
    except (OperationalError, DBAPIError, ConnectionError, OSError) as e:
        if isinstance(e, (OperationalError, DBAPIError)) or "database" in repr(e).lower():
            message = f"sync failed: the database at {database} did not answer: {e}"
            code = 2
        else:
            message = f"sync failed: {e!r}"
            code = 3
        log.error(message)
        print(message, file=sys.stderr)
        sys.exit(code)
    except Exception as e:
        message = f"sync failed: {e!r}"
        log.exception(message)
        print(message, file=sys.stderr)
        sys.exit(1)
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
