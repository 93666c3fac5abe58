"""The process's log folds failures of a watched dependency into its outage: one line
when it goes, one when it is back; everything else, bugs included, as it was logged."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import redis.exceptions
import sqlalchemy.exc

from services.mesh.logs import JsonFormatter
from services.mesh.outages import Outages

CUT = sqlalchemy.exc.OperationalError(
    "SELECT 1", {}, Exception('(2003, "Can\'t connect to MySQL server")')
)


class Log:
    """A logger whose records reach a JSON handler that folds outages."""

    def __init__(self, outages: Outages) -> None:
        self.outages = outages
        self.out = io.StringIO()
        self.logger = logging.getLogger("tests.outages.caller")

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.getvalue().splitlines()]

    def messages(self) -> list[str]:
        return [e["message"] for e in self.entries()]


@pytest.fixture
def log() -> Iterator[Log]:
    outages = Outages()
    outages.watch(["database", "redis"])
    captured = Log(outages)
    handler = logging.StreamHandler(captured.out)
    handler.setFormatter(JsonFormatter("test"))
    handler.addFilter(outages)
    loggers = [captured.logger, logging.getLogger("services.mesh.outages")]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        yield captured
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def fail_and_log(log: Log, error: Exception, *, with_traceback: bool) -> None:
    try:
        raise error
    except Exception as e:
        if with_traceback:
            log.logger.exception("sweep failed")
        else:
            log.logger.warning("call failed", extra={"error": repr(e)})


def test_failed_calls_of_a_watched_dependency_become_one_line_until_it_answers(
    log: Log,
) -> None:
    for _ in range(5):
        fail_and_log(log, CUT, with_traceback=True)
        fail_and_log(log, CUT, with_traceback=False)
    log.outages.reachable("database")
    log.outages.reachable("database")  # already back: nothing more to say

    went, back = log.entries()
    assert went["level"] == "warning"
    assert went["message"] == (
        'database unreachable: (builtins.Exception) (2003, "Can\'t connect to MySQL server")'
    )
    assert back["level"] == "info"
    assert back["message"].startswith("database reachable again after 0.0 s")
    assert back["message"].endswith(", 10 calls failed meanwhile")
    assert back["failed_calls"] == 10
    assert "error" not in went  # no traceback
    assert "error" not in back


def test_a_probe_opens_the_outage_without_counting_a_failed_call(log: Log) -> None:
    log.outages.unreachable("redis", "no answer within 1 s")
    fail_and_log(log, redis.exceptions.ConnectionError("refused"), with_traceback=False)
    log.outages.unreachable("redis", "no answer within 1 s")
    log.outages.reachable("redis")

    assert log.messages()[0] == "redis unreachable: no answer within 1 s"
    assert log.messages()[1].endswith(", 1 call failed meanwhile")
    assert len(log.messages()) == 2


def test_a_bug_is_logged_with_its_traceback_even_during_an_outage(log: Log) -> None:
    log.outages.unreachable("database", "refused")
    fail_and_log(log, KeyError("quiz"), with_traceback=True)
    try:
        raise CUT
    except sqlalchemy.exc.OperationalError:
        # A bug while handling an outage is still a bug.
        fail_and_log(log, TypeError("not a str"), with_traceback=True)

    _, key_error, type_error = log.entries()
    assert "KeyError: 'quiz'" in key_error["error"]
    assert "TypeError: not a str" in type_error["error"]


def test_a_dependency_nothing_watches_is_logged_as_it_was(log: Log) -> None:
    # Nothing would say when it is back, so an outage of it would never close.
    fail_and_log(log, redis.exceptions.ConnectionError("refused"), with_traceback=False)
    log.outages.reachable("redis")
    outages = Outages()  # watches nothing
    log.logger.handlers[0].filters[0] = outages
    fail_and_log(log, CUT, with_traceback=True)

    assert log.messages() == [
        "redis unreachable: refused",
        "redis reachable again after 0.0 s, 1 call failed meanwhile",
        "sweep failed",
    ]
    assert "OperationalError" in log.entries()[-1]["error"]


def test_a_line_that_names_another_error_than_the_one_handled_is_not_folded(
    log: Log,
) -> None:
    try:
        raise CUT
    except sqlalchemy.exc.OperationalError:
        log.logger.warning("cache refresh failed", extra={"error": repr(ValueError("bad"))})

    assert log.messages() == ["cache refresh failed"]
