"""One JSON object per log line, so logs from every service parse the same way, with
dependency failures folded into one line per outage (outages.py)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from services.mesh import tracing
from services.mesh.outages import Outages

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if trace_id := tracing.current():
            entry["trace_id"] = trace_id
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    handler.addFilter(Outages())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def outages() -> Outages:
    """The outage tracker the process's log folds failures into. Before `configure`
    (services run in-process by tests) a new one that folds nothing: whoever asks
    still tells the changes it sees."""
    for handler in logging.getLogger().handlers:
        for found in handler.filters:
            if isinstance(found, Outages):
                return found
    return Outages()
