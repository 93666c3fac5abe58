"""Trace ids that follow a request across gRPC calls and NATS messages.

W3C Trace Context (`traceparent`), the header OpenTelemetry propagates, so traces
join those of Envoy or any instrumented client. A call without one takes Envoy's
`x-request-id`, else a new id. The id lives in a context variable for the call:
every JSON log line carries it, and every NATS message published meanwhile does.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping
from contextvars import ContextVar, Token

_TRACE_ID: ContextVar[str] = ContextVar("trace_id", default="")
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


def current() -> str:
    return _TRACE_ID.get()


def begin(trace_id: str) -> Token[str]:
    return _TRACE_ID.set(trace_id)


def end(token: Token[str]) -> None:
    _TRACE_ID.reset(token)


def from_metadata(metadata: Iterable[tuple[str, str | bytes]]) -> str:
    """The caller's trace id (traceparent, else x-request-id), or a new one."""
    parent = request = ""
    for key, value in metadata:
        if key == "traceparent" and isinstance(value, str):
            parent = value
        elif key == "x-request-id" and isinstance(value, str):
            request = value
    return _parent_id(parent) or _request_id(request) or new_id()


def from_headers(headers: Mapping[str, str] | None) -> str:
    return _parent_id((headers or {}).get("traceparent", ""))


def _parent_id(traceparent: str) -> str:
    match = _TRACEPARENT.match(traceparent) if traceparent else None
    return match.group(1) if match else ""


def headers() -> dict[str, str]:
    """Headers for an outgoing NATS message: the current trace, a new span."""
    trace_id = current()
    return {"traceparent": f"00-{trace_id}-{random.getrandbits(64):016x}-01"} if trace_id else {}


def new_id() -> str:
    # Ids must be unique, not secret: the PRNG, not an os.urandom call per answer.
    return f"{random.getrandbits(128):032x}"


def _request_id(value: str) -> str:
    hexed = value.replace("-", "").lower()
    return hexed if len(hexed) == 32 and all(c in "0123456789abcdef" for c in hexed) else ""
