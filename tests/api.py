"""One client interface over both public surfaces: native gRPC (generated stubs)
and HTTP/JSON through Envoy. HTTP requests are built from the protos'
google.api.http rules, so tests exercise the contract, not a copy of it."""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
import httpx
from google.api import http_pb2
from google.protobuf import descriptor, json_format, message_factory
from google.rpc import error_details_pb2, status_pb2
from quizmesh.leaderboard.v1 import leaderboard_pb2
from quizmesh.quiz.v1 import account_pb2, library_pb2, quiz_pb2
from quizmesh.score.v1 import score_pb2
from quizmesh.stream.v1 import stream_pb2

from devstack.gateway import HTTP_OPTION

# Each public service and the process (channel) that serves it.
SERVICES = (
    ("quiz", quiz_pb2.DESCRIPTOR.services_by_name["QuizService"]),
    ("quiz", account_pb2.DESCRIPTOR.services_by_name["AccountService"]),
    ("quiz", library_pb2.DESCRIPTOR.services_by_name["LibraryService"]),
    ("score", score_pb2.DESCRIPTOR.services_by_name["ScoreService"]),
    ("leaderboard", leaderboard_pb2.DESCRIPTOR.services_by_name["LeaderboardService"]),
    ("stream", stream_pb2.DESCRIPTOR.services_by_name["StreamService"]),
)
METHODS: dict[str, tuple[str, descriptor.MethodDescriptor]] = {
    m.name: (key, m) for key, s in SERVICES for m in s.methods
}
# What Envoy's transcoder answers for each gRPC status.
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
}
CODES = {c.value[0]: c for c in grpc.StatusCode}


# The watches' browser forms: the same stream as Server-Sent Events, at the HTTP
# route of the typed RPC (which has none of its own).
SSE_FORM = {"WatchQuiz": "WatchQuizSse", "WatchLeaderboard": "WatchLeaderboardSse"}


def http_rule(rpc: str) -> http_pb2.HttpRule:
    """The google.api.http annotation of a method (of its SSE form, for a watch)."""
    return METHODS[SSE_FORM.get(rpc, rpc)][1].GetOptions().Extensions[HTTP_OPTION]


class ApiError(Exception):
    """A refusal as a client sees it: its google.rpc.ErrorInfo reason (None when the
    status carried none), and the google.rpc.BadRequest field violations (field,
    description) when it carried them."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        http_status: int | None = None,
        violations: list[tuple[str, str]] | None = None,
        reason: str | None = None,
    ):
        super().__init__(f"{code.name} ({reason}): {message}")
        self.reason = reason
        self.code = code
        self.message = message
        self.http_status = http_status
        self.violations = violations or []

    @classmethod
    def of_rpc(cls, error: grpc.aio.AioRpcError) -> ApiError:
        violations, reason = [], None
        for key, value in error.trailing_metadata() or ():
            if key == "grpc-status-details-bin" and isinstance(value, bytes):
                for detail in status_pb2.Status.FromString(value).details:
                    bad, info = error_details_pb2.BadRequest(), error_details_pb2.ErrorInfo()
                    if detail.Unpack(bad):
                        violations += [(v.field, v.description) for v in bad.field_violations]
                    elif detail.Unpack(info):
                        assert info.domain == "quizmesh", info
                        reason = info.reason
        return cls(error.code(), error.details() or "", violations=violations, reason=reason)


class Api(Protocol):
    async def call(self, rpc: str, request: dict[str, Any], token: str | None = None) -> Any: ...

    def watch(
        self, rpc: str, request: dict[str, Any], token: str | None = None
    ) -> AsyncGenerator[dict[str, Any], None]: ...


def _to_dict(msg: Any) -> dict[str, Any]:
    return json_format.MessageToDict(
        msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


@dataclass
class GrpcApi:
    """Calls each service over its own channel with the generated stubs."""

    channels: dict[str, grpc.aio.Channel]

    def _stub_method(self, rpc: str) -> tuple[Any, type[Any]]:
        key, method = METHODS[rpc]
        module = importlib.import_module(
            method.containing_service.file.name.replace("/", ".").replace(".proto", "_pb2_grpc")
        )
        stub = getattr(module, f"{method.containing_service.name}Stub")(self.channels[key])
        return getattr(stub, rpc), message_factory.GetMessageClass(method.input_type)

    @staticmethod
    def _metadata(token: str | None) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {token}"),) if token else ()

    async def call(self, rpc: str, request: dict[str, Any], token: str | None = None) -> Any:
        fn, request_type = self._stub_method(rpc)
        try:
            reply = await fn(
                json_format.ParseDict(request, request_type()), metadata=self._metadata(token)
            )
        except grpc.aio.AioRpcError as e:
            raise ApiError.of_rpc(e) from e
        return _to_dict(reply)

    async def watch(
        self, rpc: str, request: dict[str, Any], token: str | None = None
    ) -> AsyncGenerator[dict[str, Any], None]:
        fn, request_type = self._stub_method(rpc)
        call = fn(json_format.ParseDict(request, request_type()), metadata=self._metadata(token))
        try:
            async for reply in call:
                yield _to_dict(reply)
        except grpc.aio.AioRpcError as e:
            raise ApiError.of_rpc(e) from e
        finally:
            call.cancel()


@dataclass
class HttpApi:
    """HTTP/JSON through Envoy, routes read from the google.api.http annotations."""

    client: httpx.AsyncClient

    @staticmethod
    def _request(rpc: str, request: dict[str, Any]) -> tuple[str, str, dict[str, Any], Any]:
        rule = http_rule(rpc)
        verb = rule.WhichOneof("pattern")
        template = getattr(rule, verb)
        fields = dict(request)
        path = re.sub(r"\{(\w+)\}", lambda m: str(fields.pop(m.group(1))), template)
        if rule.body == "*":
            return verb.upper(), path, {}, fields
        return verb.upper(), path, fields, None

    async def call(self, rpc: str, request: dict[str, Any], token: str | None = None) -> Any:
        verb, path, query, body = self._request(rpc, request)
        headers = {"authorization": f"Bearer {token}"} if token else {}
        response = await self.client.request(verb, path, params=query, json=body, headers=headers)
        if response.status_code != 200:
            raise self._error(response.status_code, response.text)
        if not response.headers.get("content-type", "").startswith("application/json"):
            # An HttpBody route (a CSV): the body itself, as its gRPC message holds it.
            field = http_rule(rpc).response_body
            return {
                field: {"content_type": response.headers["content-type"], "text": response.text}
            }
        return response.json()

    @staticmethod
    def _error(status: int, body: str) -> ApiError:
        violations, reason = [], None
        try:
            payload = json.loads(body)
            code = CODES[int(payload["code"])]
            message = str(payload.get("message", ""))
            for detail in payload.get("details", []):
                if detail.get("@type", "").endswith("/google.rpc.BadRequest"):
                    violations += [
                        (v["field"], v["description"]) for v in detail["field_violations"]
                    ]
                elif detail.get("@type", "").endswith("/google.rpc.ErrorInfo"):
                    assert detail["domain"] == "quizmesh", detail
                    reason = str(detail["reason"])
        except (ValueError, KeyError, TypeError):
            code, message = grpc.StatusCode.UNKNOWN, body
        return ApiError(code, message, http_status=status, violations=violations, reason=reason)

    async def watch(
        self, rpc: str, request: dict[str, Any], token: str | None = None
    ) -> AsyncGenerator[dict[str, Any], None]:
        verb, path, query, _ = self._request(rpc, request)
        if token:
            query["access_token"] = token
        async with self.client.stream(verb, path, params=query, timeout=None) as response:
            if response.status_code != 200:
                raise self._error(response.status_code, (await response.aread()).decode())
            assert response.headers["content-type"].startswith("text/event-stream")
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    yield json.loads(line[5:])
