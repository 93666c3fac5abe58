"""A cap on the server streams (watches) one caller holds open on one process.

A stream with a token counts against its token's subject (a player needs two
watches; reloads and a second tab a few more), however many players share an
address: a hall of a thousand behind one NAT all watch. A stream without a token
counts against the client address (spectators, big screens).

The subject is read from the token without checking its signature: the handler
verifies the token before its first await, so a forged or expired token is refused
while still holding its slot, and never holds a slot another stream could want.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from services.mesh.config import CommonSettings
from services.mesh.context import Context, Handler
from services.mesh.errors import Reason, ResourceExhausted
from services.mesh.interception import MethodInterceptor, StreamBehaviour

# Set by Envoy to the client address it trusts (see envoy/envoy.yaml.tmpl).
CLIENT_HEADER = "x-quizmesh-client"
# Longer subjects are no subject of ours (ids are 16 characters, host names 64).
MAX_SUBJECT_CHARS = 128


def client_address(metadata: Iterable[tuple[str, str | bytes]], peer: str) -> str:
    """Envoy's word for callers from outside; the peer's address for callers inside
    the mesh (peer looks like "ipv4:10.0.0.7:51234" or "ipv6:[::1]:51234")."""
    for key, value in metadata:
        if key == CLIENT_HEADER and isinstance(value, str) and value:
            return value
    host = peer.split(":", 1)[-1]
    return host.rsplit(":", 1)[0].strip("[]") if ":" in host else host


def bearer(metadata: Iterable[tuple[str, str | bytes]]) -> str:
    """The token of an `authorization: Bearer ...` header, or "" (as the handlers
    read it: services/identity/tokens.py)."""
    for key, value in metadata:
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    return ""


def token_subject(token: str) -> str | None:
    """The `sub` claim of a JWT, unverified (see the module's docstring); None when
    `token` is no JWT with a subject."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    subject = payload.get("sub") if isinstance(payload, dict) else None
    if not isinstance(subject, str) or not subject or len(subject) > MAX_SUBJECT_CHARS:
        return None
    return subject


@dataclass(frozen=True, slots=True)
class Holder:
    """Whose watch a stream is: a token's subject, else the client address."""

    address: str
    subject: str | None = None


class StreamQuota:
    def __init__(self, per_address: int, per_subject: int) -> None:
        self.per_address = per_address
        self.per_subject = per_subject
        self._by_address: Counter[str] = Counter()
        self._by_subject: Counter[str] = Counter()

    @classmethod
    def of(cls, settings: CommonSettings) -> StreamQuota:
        return cls(settings.max_streams_per_client, settings.max_streams_per_subject)

    @contextlib.contextmanager
    def hold(self, holder: Holder) -> Iterator[None]:
        if holder.subject is not None:
            counts, key, limit = self._by_subject, holder.subject, self.per_subject
            whose = f"for token subject {holder.subject}"
        else:
            counts, key, limit = self._by_address, holder.address, self.per_address
            whose = f"from {holder.address}"
        if counts[key] >= limit:
            raise ResourceExhausted(
                f"too many open watches {whose} (at most {limit}); close one, then retry",
                Reason.ERROR_REASON_TOO_MANY_WATCHES,
            )
        counts[key] += 1
        try:
            yield
        finally:
            counts[key] -= 1
            if not counts[key]:
                del counts[key]


def request_token_reader(method: str) -> Callable[[Any], str]:
    """The `access_token` field of `method`'s raw request (EventSource cannot send
    headers; Envoy maps `?access_token=` into the field), or "" for methods without one."""
    service, _, name = method.strip("/").partition("/")
    try:
        found = descriptor_pool.Default().FindMethodByName(f"{service}.{name}")
    except KeyError:
        return lambda raw: ""
    if "access_token" not in found.input_type.fields_by_name:
        return lambda raw: ""
    request_class = message_factory.GetMessageClass(found.input_type)

    def read(raw: Any) -> str:
        if not isinstance(raw, bytes):
            return str(getattr(raw, "access_token", ""))
        try:
            return str(getattr(request_class.FromString(raw), "access_token", ""))
        except DecodeError:
            return ""  # the parsing interceptor says what is wrong with it

    return read


class StreamQuotaInterceptor(MethodInterceptor):
    """Our own streams only: health watches come from the platform, not clients."""

    def __init__(self, quota: StreamQuota) -> None:
        super().__init__()
        self.quota = quota

    def wrap_stream(self, method: str, inner: StreamBehaviour, handler: Handler) -> StreamBehaviour:
        if not method.startswith("/quizmesh."):
            return inner
        quota = self.quota
        request_token = request_token_reader(method)

        async def stream(request: Any, context: Context) -> None:
            metadata = context.invocation_metadata() or ()
            token = bearer(metadata) or request_token(request)
            holder = Holder(
                client_address(metadata, context.peer()),
                token_subject(token) if token else None,
            )
            with quota.hold(holder):
                await inner(request, context)

        return stream
