"""Dependency outages, told once: a line when Redis, NATS or the database starts
failing and one when it answers again (after how long, how many calls failed
meanwhile), instead of a line, often with a traceback, per failed call or loop tick.

Whatever meets a failure keeps logging it as it always has, from the except block
that caught it, with its exception (exc_info) or `error=repr(e)`. The process's log
handler passes every record through `Outages.filter`, which folds those about a
dependency briefly away (status.TRANSIENT) into that dependency's outage: one place,
so no call site (request handling, sweeps, announcers, recovery loops) needs its
own rate limit. Whether a dependency answers again is told by its health check or
its client (a NATS reconnect); one that nothing watches is never folded, since
nothing would ever close its outage. Anything else, bugs included, passes as it is.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from services.mesh.metrics import dependency_of
from services.mesh.status import TRANSIENT

log = logging.getLogger(__name__)


def reason_of(error: BaseException) -> str:
    """One line on what went wrong (SQLAlchemy's messages run on with the SQL)."""
    said = str(error).strip().splitlines()
    return said[0][:300] if said else type(error).__name__


def _causes(error: BaseException) -> Iterator[BaseException]:
    """The error and what it was raised from (`raise ... from e`); not what it was
    raised while handling, or a bug in an except block would pass for an outage."""
    met: list[BaseException] = []
    cause: BaseException | None = error
    while cause is not None and cause not in met:
        met.append(cause)
        yield cause
        cause = cause.__cause__


def _error_of(record: logging.LogRecord) -> BaseException | None:
    if record.exc_info and record.exc_info[1] is not None:
        return record.exc_info[1]
    # error=repr(e) names the exception being handled as the line is logged.
    said = getattr(record, "error", None)
    handled = sys.exc_info()[1]
    if isinstance(said, str) and handled is not None:
        return next((e for e in _causes(handled) if repr(e) == said), None)
    return None


@dataclass
class _Outage:
    began: float
    failed_calls: int = 0


class Outages(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self._watched: set[str] = set()
        self._open: dict[str, _Outage] = {}
        # Records may come from any thread (grpc's, the metrics server's).
        self._lock = threading.Lock()

    def watch(self, dependencies: Iterable[str]) -> None:
        """Fold the failures of `dependencies`: something will say when they answer."""
        with self._lock:
            self._watched.update(dependencies)

    def failed(self, dependency: str, error: BaseException) -> None:
        """A call to `dependency` failed with `error`."""
        self._begin(dependency, reason_of(error), failed_calls=1)

    def unreachable(self, dependency: str, reason: str) -> None:
        """A probe or the client's connection says `dependency` is away."""
        self._begin(dependency, reason, failed_calls=0)

    def reachable(self, dependency: str) -> None:
        """`dependency` answers (again)."""
        with self._lock:
            outage = self._open.pop(dependency, None)
        if outage is None:
            return
        seconds = time.monotonic() - outage.began
        calls = outage.failed_calls
        log.info(
            f"{dependency} reachable again after {seconds:.1f} s, "
            f"{calls} call{'' if calls == 1 else 's'} failed meanwhile",
            extra={"dependency": dependency, "seconds": round(seconds, 1), "failed_calls": calls},
        )

    def _begin(self, dependency: str, reason: str, failed_calls: int) -> None:
        with self._lock:
            outage = self._open.get(dependency)
            if outage is not None:
                outage.failed_calls += failed_calls
                return
            self._open[dependency] = _Outage(time.monotonic(), failed_calls)
        log.warning(
            f"{dependency} unreachable: {reason}",
            extra={"dependency": dependency, "reason": reason},
        )

    def filter(self, record: logging.LogRecord) -> bool:
        """False (not logged) for a record about a watched dependency's failure."""
        # asyncio's own reports (a task nobody awaited) are bugs, whatever the error.
        if record.name in (__name__, "asyncio") or not self._watched:
            return True
        error = _error_of(record)
        if error is None:
            return True
        for cause in _causes(error):
            dependency = dependency_of(cause)
            if isinstance(cause, TRANSIENT) and dependency in self._watched:
                self.failed(dependency, cause)
                return False
        return True
