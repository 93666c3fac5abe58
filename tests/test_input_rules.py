"""The field limits declared in the contracts are what the services enforce.

Cases are derived from the `(quizmesh.validate.v1.rules)` options themselves: for
every rule on every request field, a request that is valid except for that one
field must be refused with INVALID_ARGUMENT and a google.rpc.BadRequest naming
exactly that field, over native gRPC and as HTTP 400 with a JSON body through
Envoy, and must change nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from quizmesh.validate.v1 import validate_pb2

from tests.api import METHODS, GrpcApi, HttpApi, http_rule
from tests.game import refused
from tests.stack import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")

Request = dict[str, Any]


def rules(fd: FieldDescriptor) -> validate_pb2.FieldRules | None:
    options = fd.GetOptions()
    return (
        options.Extensions[validate_pb2.rules] if options.HasExtension(validate_pb2.rules) else None
    )


# A value that keeps each pattern the contract uses, of at least a given length.
PATTERN_EXAMPLES: dict[str, Callable[[int], str]] = {
    "[A-Za-z0-9]+": lambda length: "A" * max(length, 1),
    "[^@\\s]+@[^@\\s]+\\.[^@\\s]+": lambda length: "a" * max(length - 10, 1) + "@b.example",
}


def valid_scalar(fd: FieldDescriptor, rule: validate_pb2.FieldRules) -> Any:
    if fd.type == FieldDescriptor.TYPE_STRING:
        if rule.pattern:
            return PATTERN_EXAMPLES[rule.pattern](rule.min_len)
        return "A" * rule.min_len
    if fd.type == FieldDescriptor.TYPE_BOOL:
        return False
    return rule.gte if rule.HasField("gte") else 0


def valid_request(descriptor: Descriptor) -> Request:
    """The smallest request that keeps every declared rule (optional fields unset,
    unless required)."""
    request: Request = {}
    for fd in descriptor.fields:
        rule = rules(fd) or validate_pb2.FieldRules()
        if fd.has_presence and fd.message_type is None and not rule.required:
            continue
        if fd.message_type is not None:
            item: Any = valid_request(fd.message_type)
        else:
            item = valid_scalar(fd, rule.items if fd.is_repeated else rule)
        request[fd.name] = [item] * max(rule.min_items, 1) if fd.is_repeated else item
    return request


def breaking_values(fd: FieldDescriptor, rule: validate_pb2.FieldRules) -> Iterator[Any]:
    """Values of one scalar that break `rule`, one per limit."""
    if fd.type == FieldDescriptor.TYPE_STRING:
        if rule.min_len:
            yield ""
            yield "   "
        if rule.HasField("max_len"):
            yield "A" * (rule.max_len + 1)
        if rule.pattern:
            yield "no-such!"
    else:
        if rule.HasField("gte"):
            yield rule.gte - 1
        if rule.HasField("lte"):
            yield rule.lte + 1


def broken_requests(descriptor: Descriptor) -> Iterator[tuple[str, str, Request]]:
    """(field path, broken value's label, request valid except at that path)."""
    base = valid_request(descriptor)
    for fd in descriptor.fields:
        rule = rules(fd)
        if rule is not None and fd.is_repeated:
            item = base[fd.name][0]
            if rule.min_items:
                yield fd.name, "too few", {**base, fd.name: [item] * (rule.min_items - 1)}
            if rule.HasField("max_items"):
                yield fd.name, "too many", {**base, fd.name: [item] * (rule.max_items + 1)}
            if rule.HasField("items"):
                for value in breaking_values(fd, rule.items):
                    bad = {**base, fd.name: [value, *base[fd.name][1:]]}
                    yield f"{fd.name}[0]", repr(value)[:12], bad
        elif rule is not None:
            for value in breaking_values(fd, rule):
                yield fd.name, repr(value)[:12], {**base, fd.name: value}
            if rule.required:
                yield fd.name, "missing", {k: v for k, v in base.items() if k != fd.name}
        if fd.message_type is not None and fd.message_type.full_name.startswith("quizmesh."):
            for path, label, inner in broken_requests(fd.message_type):
                bad = copy.deepcopy(base)
                if fd.is_repeated:
                    bad[fd.name][0] = inner
                    yield f"{fd.name}[0].{path}", label, bad
                else:
                    bad[fd.name] = inner
                    yield f"{fd.name}.{path}", label, bad


BROKEN = [
    (rpc, path, label, request)
    for rpc, (_, method) in sorted(METHODS.items())
    for path, label, request in broken_requests(method.input_type)
]
CASES = [
    pytest.param(rpc, path, request, id=f"{rpc}-{path}-{label}")
    for rpc, path, label, request in BROKEN
]


def in_url_path(rpc: str, field: str, request: Request) -> bool:
    """Whether HTTP cannot carry this value: an empty path segment is another route."""
    rule = http_rule(rpc)
    template = getattr(rule, rule.WhichOneof("pattern"))
    value = request.get(field)
    return "{" + field + "}" in template and (not isinstance(value, str) or not value.strip())


@pytest.mark.asyncio(loop_scope="session")
async def test_every_request_field_declares_its_limits() -> None:
    def undeclared(descriptor: Descriptor) -> Iterator[str]:
        for fd in descriptor.fields:
            if fd.message_type is not None and fd.message_type.full_name.startswith("quizmesh."):
                yield from (f"{fd.name}.{inner}" for inner in undeclared(fd.message_type))
                if not fd.is_repeated:
                    continue
            if rules(fd) is None:
                yield fd.name

    missing = {
        f"{rpc}.{name}"
        for rpc, (_, method) in METHODS.items()
        for name in undeclared(method.input_type)
    }
    assert not missing, f"request fields without declared limits: {sorted(missing)}"


@pytest.mark.parametrize(("rpc", "field", "request_body"), CASES)
async def test_a_broken_field_is_refused_by_name_over_grpc(
    stack: Stack, rpc: str, field: str, request_body: Request
) -> None:
    api = GrpcApi(stack.channels)
    call = (
        anext(api.watch(rpc, request_body))
        if METHODS[rpc][1].server_streaming
        else api.call(rpc, request_body)
    )
    error = await refused(call)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in error.violations] == [field]
    assert error.message.startswith(field + " ")


@pytest.mark.parametrize(("rpc", "field", "request_body"), CASES)
async def test_a_broken_field_is_http_400_naming_it_through_envoy(
    http: httpx.AsyncClient, rpc: str, field: str, request_body: Request
) -> None:
    if in_url_path(rpc, field, request_body):
        return  # /v1/quizzes//... is not this RPC's route at all (404 from Envoy)
    # A browser leaves out what it does not set (an empty access_token= is a bad token).
    request_body = {k: v for k, v in request_body.items() if v != "" or k == field}
    api = HttpApi(http)
    call = (
        anext(api.watch(rpc, request_body))
        if METHODS[rpc][1].server_streaming
        else api.call(rpc, request_body)
    )
    error = await refused(call)
    if field == "access_token":
        # Envoy verifies any token it is given before the service sees the request.
        assert error.http_status == 401
        return
    assert (error.http_status, error.code) == (400, grpc.StatusCode.INVALID_ARGUMENT)
    assert [f for f, _ in error.violations] == [field], error.message
    assert error.message.startswith(field + " ")


async def test_every_broken_field_is_named_at_once(stack: Stack, http: httpx.AsyncClient) -> None:
    quiz = {
        "title": " ",
        "questions": [
            {"text": "ok?", "choices": ["yes"], "correct_choice": 0},
            {"text": "x" * 501, "choices": ["a", ""], "correct_choice": 0, "points": -5},
        ],
    }
    expected = [
        ("title", "must not be empty"),
        ("questions[0].choices", "must have between 2 and 6 items, got 1"),
        ("questions[1].text", "must be between 1 and 500 characters, got 501"),
        ("questions[1].choices[1]", "must not be empty"),
        ("questions[1].points", "must be between 0 and 10000, got -5"),
    ]
    token = stack.host_token()
    for api in (GrpcApi(stack.channels), HttpApi(http)):
        error = await refused(api.call("CreateQuiz", quiz, token))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        assert error.violations == expected
        assert error.message == "; ".join(f"{f} {d}" for f, d in expected)


async def test_a_rule_across_fields_is_named_too(stack: Stack, http: httpx.AsyncClient) -> None:
    quiz = {"title": "T", "questions": [{"text": "Q", "choices": ["a", "b"], "correct_choice": 2}]}
    for api in (GrpcApi(stack.channels), HttpApi(http)):
        error = await refused(api.call("CreateQuiz", quiz, stack.host_token()))
        assert error.violations == [
            ("questions[0].correct_choice", "must be between 0 and 1 (one of its 2 choices), got 2")
        ]


async def test_refused_requests_create_nothing(stack: Stack) -> None:
    api = GrpcApi(stack.channels)
    token = stack.host_token("validation-host")

    async def quiz_ids() -> list[str]:
        listed = await api.call("ListQuizzes", {"page_size": 100}, token)
        return [quiz["quiz_id"] for quiz in listed["quizzes"]]

    before = await quiz_ids()
    for rpc, _, _, request in BROKEN:
        if rpc == "CreateQuiz":
            await refused(api.call("CreateQuiz", request, token))
    assert await quiz_ids() == before
