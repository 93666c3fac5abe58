"""Property-based hostile input (issue 6): generated requests for every RPC, over
native gRPC (as raw protobuf bytes, so out-of-range numbers, wrong wire types,
unknown and duplicated fields really reach the server) and over Envoy's HTTP/JSON
(as raw body text, so wrong JSON types, duplicated keys and lone surrogates do).

Whatever arrives, the answer is a clear refusal or a success, never INTERNAL /
UNKNOWN / DATA_LOSS or a 5xx, and a refused request writes nothing: the quizzes,
two fixed quizzes and their boards and scores read the same before and after.

Hypothesis drives `async def` tests directly: pytest-asyncio runs a `@given`
coroutine's inner test on the session loop, so only module/session-scoped
fixtures are used (no function-scoped fixture is shared between examples)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import grpc
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from devstack.gateway import EnvoyProcess
from services.database.engine import create_engine
from services.database.tables import host_sessions, hosts, library_quizzes
from tests.api import METHODS, SSE_FORM, ApiError, GrpcApi, http_rule
from tests.game import join
from tests.stack import Stack

pytestmark = pytest.mark.usefixtures("stack")

SETTINGS = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}
# Calls that may legitimately change what `snapshot` reads when they succeed.
WRITES = {
    "CreateQuiz",
    "JoinQuiz",
    "StartQuiz",
    "AdvanceQuestion",
    "CloseQuiz",
    "SetLobby",
    "SubmitAnswer",
    "SignUp",
    "SignIn",
    "RefreshSession",
    "SignOut",
    "CreateLibraryQuiz",
    "UpdateLibraryQuiz",
    "DuplicateLibraryQuiz",
    "DeleteLibraryQuiz",
    "PlayLibraryQuiz",
}
STREAMS = {"WatchLeaderboard", "WatchQuiz", "WatchLeaderboardSse", "WatchQuizSse"}
HUGE = 70 * 1024  # over Envoy's 64 KiB body limit
URL_TEXT = 2_500  # percent-encoded, stays under the 64 KiB httpx allows for a URL

FIXED_QUIZ: dict[str, Any] = {
    "title": "Hostile target",
    "questions": [
        {"text": "1 + 1?", "choices": ["1", "2"], "correct_choice": 1, "time_limit_ms": 600_000},
        {"text": "2 + 2?", "choices": ["4", "5"], "correct_choice": 0, "time_limit_ms": 600_000},
        {"text": "3 + 3?", "choices": ["6", "7"], "correct_choice": 0, "time_limit_ms": 600_000},
    ],
}


@dataclass
class Target:
    """Two quizzes of our own: one OPEN with a player, one RUNNING with an answer."""

    host: str
    open_id: str
    running_id: str
    open_player: tuple[str, str]  # (player_id, token)
    running_player: tuple[str, str]
    account: tuple[str, str]  # a host account's (email, password)
    refresh_token: str  # of one of its sessions
    library_quiz_id: str  # a library quiz of `host`
    database: AsyncEngine  # where `snapshot` reads the account rows


@pytest.fixture(scope="module")
async def target(stack: Stack) -> AsyncIterator[Target]:
    api = GrpcApi(stack.channels)
    host = stack.host_token("hostile-host")
    open_id = (await api.call("CreateQuiz", FIXED_QUIZ, host))["quiz"]["quiz_id"]
    running_id = (await api.call("CreateQuiz", FIXED_QUIZ, host))["quiz"]["quiz_id"]
    pat = await join(api, open_id, "pat")
    ren = await join(api, running_id, "ren")
    await api.call("StartQuiz", {"quiz_id": running_id}, host)
    await api.call(
        "SubmitAnswer", {"quiz_id": running_id, "question_index": 0, "choice_index": 1}, ren.token
    )
    account = (f"hostile-{uuid.uuid4().hex[:8]}@example.org", "hostile password")
    made = await api.call(
        "SignUp", {"email": account[0], "password": account[1], "display_name": "Hostile"}
    )
    library = await api.call("CreateLibraryQuiz", FIXED_QUIZ, host)
    engine = create_engine(stack.backends.database_url)
    try:
        yield Target(
            host,
            open_id,
            running_id,
            (pat.player_id, pat.token),
            (ren.player_id, ren.token),
            account,
            made["session"]["refresh_token"],
            library["library_quiz"]["library_quiz_id"],
            engine,
        )
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
async def web(gateway: EnvoyProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        yield client


def _strip_times(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_times(v) for k, v in value.items() if k != "server_time"}
    if isinstance(value, list | tuple):
        return [_strip_times(v) for v in value]
    return value


async def snapshot(stack: Stack, t: Target) -> Any:
    """Everything a stray write could change, read over gRPC by the host."""
    api = GrpcApi(stack.channels)
    listed = (await api.call("ListQuizzes", {"page_size": 100}))["quizzes"]
    # Every quiz id (a stray CreateQuiz shows), but only the targets' own details:
    # other tests' quizzes still move on by themselves (deadline sweeps, final boards).
    own = [q for q in listed if q["quiz_id"] in (t.open_id, t.running_id)]
    state: dict[str, Any] = {"ids": [q["quiz_id"] for q in listed], "own": own}
    for qid, (pid, _) in ((t.open_id, t.open_player), (t.running_id, t.running_player)):
        state[qid] = (
            await api.call("GetQuiz", {"quiz_id": qid}, t.host),
            await api.call("GetLeaderboard", {"quiz_id": qid, "page_size": 1000}),
            await api.call("GetPlayerScore", {"quiz_id": qid, "player_id": pid}, t.host),
        )
    state["accounts"] = await account_rows(t.database)
    return _strip_times(state)


async def account_rows(engine: AsyncEngine) -> list[Any]:
    """What a stray write to the account and library tables would change, in a few
    aggregates (reading every row per example grows with what the test writes)."""
    h, sess, lib = hosts.c, host_sessions.c, library_quizzes.c
    async with engine.connect() as conn:
        accounts = (await conn.execute(select(func.count(), func.max(h.created_ms)))).one()
        sessions = (
            await conn.execute(
                select(func.count(), func.count(sess.used_ms), func.count(sess.revoked_ms))
            )
        ).one()
        library = (
            await conn.execute(
                select(func.count(), func.sum(lib.version), func.max(lib.updated_ms))
            )
        ).one()
    return [tuple(accounts), tuple(sessions), tuple(library)]


# ---------------------------------------------------------------- value strategies

EDGE_TEXT = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\x1b[2J\x07\x7f",
    "\u202eevil\u202c",  # RTL override
    "\u200b\u200d\ufeff",  # invisible
    "שלום עולם",  # RTL script
    "😀" * 40,
    "👩‍👩‍👧‍👦",
    "e\u0301" * 20,  # combining marks
    "\U0010ffff\ufffe\uffff",  # noncharacters
    "NOSUCH23",
    "../../etc/passwd",
    "%00%2F?#&=",
    "' OR 1=1 --",
    "${jndi:ldap://x}",
    "x" * 201,
    "x" * HUGE,
    "é" * (HUGE // 2),
]
EDGE_INTS = [0, 1, -1, 2, 5, 99, 1000, 1001, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1]
EDGE_INTS += [2**32, 2**53 + 1, 2**63 - 1, 2**63, -(2**63), 2**64, 10**30]

texts = st.one_of(
    st.sampled_from(EDGE_TEXT),
    st.text(max_size=40),
    st.text(st.characters(codec="utf-8"), max_size=8).map(lambda s: s * 500),
)
ints = st.one_of(st.sampled_from(EDGE_INTS), st.integers(-3, 3))


def quiz_ids(t: Target) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from([t.open_id, t.running_id, t.open_id.lower()]), texts)


def tokens(t: Target) -> st.SearchStrategy[str | None]:
    return st.sampled_from(
        [None, t.host, t.open_player[1], t.running_player[1], "garbage", "a.b.c", "x" * 9000]
    )


def question_specs() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "text": texts,
            "choices": st.lists(texts, max_size=8),
            "correct_choice": ints,
            "points": ints,
            "time_limit_ms": ints,
        },
    )


def requests(t: Target) -> dict[str, st.SearchStrategy[dict[str, Any]]]:
    """A well-typed (proto3 JSON) request strategy for each RPC, with hostile values."""
    qid = quiz_ids(t)
    pid = st.one_of(st.sampled_from([t.open_player[0], t.running_player[0]]), texts)
    emails = st.one_of(st.sampled_from([t.account[0], t.account[0].upper()]), texts)
    passwords = st.one_of(st.just(t.account[1]), texts)
    refresh = st.one_of(st.sampled_from([t.refresh_token, "qmr_" + "A" * 43]), texts)
    lid = st.one_of(st.just(t.library_quiz_id), texts)
    content = st.fixed_dictionaries(
        {},
        optional={
            "title": texts,
            "questions": st.lists(question_specs(), max_size=4),
            "instant_feedback": st.booleans(),
        },
    )
    found: dict[str, st.SearchStrategy[dict[str, Any]]] = {
        "CreateQuiz": st.fixed_dictionaries(
            {},
            optional={
                "title": texts,
                "questions": st.lists(question_specs(), max_size=4)
                | st.just([{"text": "q", "choices": ["a", "b"]}] * 101),
            },
        ),
        "GetQuiz": st.fixed_dictionaries({"quiz_id": qid}),
        "ListQuizzes": st.fixed_dictionaries(
            {}, optional={"page_size": ints, "page_token": texts, "mine": st.booleans()}
        ),
        "JoinQuiz": st.fixed_dictionaries({"quiz_id": qid}, optional={"nickname": texts}),
        "StartQuiz": st.fixed_dictionaries({"quiz_id": qid}),
        "AdvanceQuestion": st.fixed_dictionaries({"quiz_id": qid}),
        "CloseQuiz": st.fixed_dictionaries({"quiz_id": qid}),
        "SetLobby": st.fixed_dictionaries({"quiz_id": qid}, optional={"locked": st.booleans()}),
        "GetQuizReport": st.fixed_dictionaries({"quiz_id": qid}),
        "GetQuizReportCsv": st.fixed_dictionaries({"quiz_id": qid}),
        "SubmitAnswer": st.fixed_dictionaries(
            {"quiz_id": qid}, optional={"question_index": ints, "choice_index": ints}
        ),
        "GetPlayerScore": st.fixed_dictionaries({"quiz_id": qid, "player_id": pid}),
        "GetLeaderboard": st.fixed_dictionaries(
            {"quiz_id": qid}, optional={"page_size": ints, "page_token": texts}
        ),
        "GetPlayerRank": st.fixed_dictionaries(
            {"quiz_id": qid, "player_id": pid}, optional={"neighbours": ints}
        ),
        "WatchLeaderboard": st.fixed_dictionaries(
            {"quiz_id": qid}, optional={"access_token": texts}
        ),
        "WatchQuiz": st.fixed_dictionaries(
            {"quiz_id": qid}, optional={"after_sequence": ints, "access_token": texts}
        ),
        "SignUp": st.fixed_dictionaries(
            {},
            optional={
                "email": emails,
                "password": passwords,
                "display_name": texts,
                "invite_code": texts,
            },
        ),
        "SignIn": st.fixed_dictionaries({}, optional={"email": emails, "password": passwords}),
        "RefreshSession": st.fixed_dictionaries({}, optional={"refresh_token": refresh}),
        "SignOut": st.fixed_dictionaries({}, optional={"refresh_token": refresh}),
        "CreateLibraryQuiz": content,
        "ListLibraryQuizzes": st.fixed_dictionaries(
            {}, optional={"page_size": ints, "page_token": texts}
        ),
        "GetLibraryQuiz": st.fixed_dictionaries({"library_quiz_id": lid}),
        "UpdateLibraryQuiz": st.builds(
            lambda ref, body, version: {**ref, **body, **version},
            st.fixed_dictionaries({"library_quiz_id": lid}),
            content,
            st.fixed_dictionaries({}, optional={"expected_version": ints}),
        ),
        "DuplicateLibraryQuiz": st.fixed_dictionaries(
            {"library_quiz_id": lid}, optional={"title": texts}
        ),
        "DeleteLibraryQuiz": st.fixed_dictionaries({"library_quiz_id": lid}),
        "PlayLibraryQuiz": st.fixed_dictionaries({"library_quiz_id": lid}),
    }
    for typed, sse in SSE_FORM.items():
        found[sse] = found[typed]
    return found


# ---------------------------------------------------------------- raw protobuf


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative numbers as two's complement, like protobuf does
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, value: Any) -> bytes:
    if isinstance(value, bool | int):
        return _varint(number << 3) + _varint(int(value))
    if isinstance(value, dict):
        raw = encode(value, _NESTED)
    else:
        raw = str(value).encode("utf-8", "surrogatepass")
    return _varint(number << 3 | 2) + _varint(len(raw)) + raw


_NESTED: dict[str, int] = {
    "text": 1,
    "choices": 2,
    "correct_choice": 3,
    "points": 4,
    "time_limit_ms": 5,
}


def encode(request: dict[str, Any], numbers: dict[str, int]) -> bytes:
    out = b""
    for name, value in request.items():
        for item in value if isinstance(value, list) else [value]:
            out += _field(numbers[name], item)
    return out


def wire_extras() -> st.SearchStrategy[bytes]:
    """Unknown fields, wrong wire types for known fields (well-formed wire)."""
    tag = st.integers(1, 2**29 - 1)
    return st.one_of(
        st.just(b""),
        st.builds(lambda n, v: _varint(n << 3) + _varint(v), tag, st.integers(0, 2**64 - 1)),
        st.builds(
            lambda n, b: _varint(n << 3 | 2) + _varint(len(b)) + b, tag, st.binary(max_size=40)
        ),
        st.builds(lambda n: _varint(n << 3 | 1) + b"\xff" * 8, st.integers(1, 5)),  # fixed64
        st.builds(lambda n: _varint(n << 3 | 5) + b"\x01" * 4, st.integers(1, 5)),  # fixed32
    )


def _grpc_method(rpc: str) -> tuple[str, str, dict[str, int]]:
    key, method = METHODS[rpc]
    numbers = {f.name: f.number for f in method.input_type.fields}
    path = f"/{method.containing_service.full_name}/{rpc}"
    return key, path, numbers


async def raw_grpc(stack: Stack, rpc: str, body: bytes, token: str | None) -> grpc.StatusCode:
    key, path, _ = _grpc_method(rpc)
    channel = stack.channels[key]
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    # No serializers: the body goes out as it is, and replies come back as bytes.
    try:
        if rpc in STREAMS:
            stream: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(path)
            call = stream(body, metadata=metadata)
            try:
                await asyncio.wait_for(anext(aiter(call)), timeout=2)
            except (TimeoutError, StopAsyncIteration):
                pass
            finally:
                call.cancel()
        else:
            unary: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(path)
            await unary(body, metadata=metadata, timeout=10)
    except grpc.aio.AioRpcError as e:
        return e.code()
    return grpc.StatusCode.OK


@dataclass
class Baseline:
    state: Any


async def check_no_partial_write(
    stack: Stack, t: Target, base: Baseline, rpc: str, ok: bool, describe: Callable[[], str]
) -> None:
    after = await snapshot(stack, t)
    if ok and rpc in WRITES:
        # A valid request that succeeded: its write is expected; the boards follow
        # asynchronously, so wait until what we read stops changing.
        for _ in range(30):
            await asyncio.sleep(0.1)
            again = await snapshot(stack, t)
            if again == after:
                break
            after = again
        base.state = after
        return
    assert after == base.state, f"state changed by a refused {rpc}: {describe()}"


@st.composite
def grpc_cases(draw: st.DrawFn, t: Target) -> tuple[str, bytes, str | None]:
    rpc = draw(st.sampled_from(sorted(METHODS)))
    request = draw(requests(t)[rpc])
    _, _, numbers = _grpc_method(rpc)
    body = encode(request, numbers)
    mode = draw(st.sampled_from(["as-is", "append", "prepend", "duplicate"]))
    extra = draw(wire_extras())
    if mode == "append":
        body += extra
    elif mode == "prepend":
        body = extra + body
    elif mode == "duplicate":
        body += body
    return rpc, body, draw(tokens(t))


@pytest.fixture(scope="module")
async def baseline(stack: Stack, target: Target) -> Baseline:
    return Baseline(await snapshot(stack, target))


@SETTINGS
@given(data=st.data())
async def test_grpc_never_fails_internally_nor_writes_half(
    stack: Stack, target: Target, baseline: Baseline, data: st.DataObject
) -> None:
    rpc, body, token = data.draw(grpc_cases(target), label="case")
    code = await raw_grpc(stack, rpc, body, token)
    assert code not in NEVER, f"{rpc} {body[:300]!r} -> {code}"
    await check_no_partial_write(
        stack, target, baseline, rpc, code == grpc.StatusCode.OK, lambda: repr(body[:300])
    )


# Corrupt wire format (a length running past the end of the message): the smallest
# such body, for every RPC. grpcio answers a request it cannot deserialize with
# UNKNOWN unless the service maps it; docs/spec.md#errors wants a clear INVALID_ARGUMENT.
CORRUPT = b"\n\x05ab"


@pytest.mark.parametrize("rpc", sorted(METHODS))
async def test_grpc_corrupt_wire_format_is_a_clear_refusal(
    stack: Stack, target: Target, baseline: Baseline, rpc: str
) -> None:
    code = await raw_grpc(stack, rpc, CORRUPT, target.host)
    assert code == grpc.StatusCode.INVALID_ARGUMENT, f"{rpc} {CORRUPT!r} -> {code}"
    await check_no_partial_write(stack, target, baseline, rpc, False, lambda: repr(CORRUPT))


# ---------------------------------------------------------------- HTTP/JSON via Envoy


def _http_rule(rpc: str) -> tuple[str, str, bool]:
    rule = http_rule(rpc)
    verb = rule.WhichOneof("pattern")
    return verb.upper(), getattr(rule, verb), rule.body == "*"


WRONG_TYPES: list[Any] = [None, True, 1.5, -0.0, 1e300, "12", "", [], [1, 2], {}, {"a": 1}]


def json_values() -> st.SearchStrategy[Any]:
    return st.one_of(texts, ints, st.sampled_from(WRONG_TYPES))


@st.composite
def http_cases(draw: st.DrawFn, t: Target) -> tuple[str, str, str, str | None, str | None]:
    """(rpc, verb, url, body text or None, token)."""
    rpc = draw(st.sampled_from(sorted(METHODS)))
    verb, template, has_body = _http_rule(rpc)
    request: dict[str, Any] = dict(draw(requests(t)[rpc]))
    if draw(st.booleans()):  # wrong JSON types / unknown fields
        names = [*request, "unknown_field", "quizId", "@type"]
        for name in draw(st.lists(st.sampled_from(names), max_size=3, unique=True)):
            request[name] = draw(json_values())
    path_params = {
        name: request.pop(name, "")
        for name in ("quiz_id", "player_id", "library_quiz_id")
        if f"{{{name}}}" in template
    }
    path = template
    for name, value in path_params.items():
        path = path.replace(f"{{{name}}}", quote(str(value)[:URL_TEXT], safe=""))
    body: str | None = None
    if has_body:
        body = json.dumps(request, ensure_ascii=draw(st.booleans()))
        style = draw(st.sampled_from(["json", "duplicated", "surrogate", "broken", "not-object"]))
        if style == "duplicated" and request:
            key = next(iter(request))
            body = body[:-1] + f', "{key}": {json.dumps(draw(json_values()))}}}'
        elif style == "surrogate":
            body = '{"title": "\\ud800x", "nickname": "\\udfff", "quiz_id": "\\ud83d"}'
        elif style == "broken":
            body = body[: draw(st.integers(0, max(0, len(body) - 1)))]
        elif style == "not-object":
            body = json.dumps(draw(json_values()))
    else:
        pairs = [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in request.items()]
        duplicate: bool = draw(st.booleans())
        if pairs and duplicate:
            pairs.append(pairs[0])  # duplicated query parameter
        if pairs:
            # Shared between the parameters: the URL stays under httpx's 64 KiB.
            cap = URL_TEXT // len(pairs)
            path += "?" + "&".join(f"{quote(k)}={quote(v[:cap], safe='')}" for k, v in pairs)
    return rpc, verb, path, body, draw(tokens(t))


async def raw_http(
    web: httpx.AsyncClient, verb: str, url: str, body: str | None, token: str | None, stream: bool
) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    content = None if body is None else body.encode("utf-8", "surrogatepass")
    request = web.build_request(verb, url, content=content, headers=headers)
    response = await web.send(request, stream=stream)
    if stream:
        try:
            if response.status_code == 200:
                # A valid watch: the first bytes are enough.
                async def first() -> None:
                    async for _ in response.aiter_bytes():
                        return

                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(first(), timeout=2)
            else:
                await response.aread()
        finally:
            await response.aclose()
    return response


@SETTINGS
@given(data=st.data())
async def test_http_never_answers_5xx_nor_writes_half(
    stack: Stack, target: Target, baseline: Baseline, web: httpx.AsyncClient, data: st.DataObject
) -> None:
    rpc, verb, url, body, token = data.draw(http_cases(target), label="case")
    response = await raw_http(web, verb, url, body, token, rpc in STREAMS)
    shown = f"{verb} {url[:300]} body={None if body is None else body[:300]!r}"
    assert response.status_code < 500, f"{shown} -> {response.status_code} {response.text[:500]}"
    if rpc not in STREAMS or response.status_code != 200:
        text = response.content.decode("utf-8")  # a text body, never binary garbage
        if response.headers.get("content-type", "").startswith("application/json"):
            json.loads(text)
    await check_no_partial_write(
        stack, target, baseline, rpc, response.status_code == 200, lambda: shown
    )


async def test_the_fixed_quizzes_still_work(stack: Stack, target: Target) -> None:
    """After all of that, the target quizzes answer normally (or were validly moved on)."""
    api = GrpcApi(stack.channels)
    for qid in (target.open_id, target.running_id):
        quiz = (await api.call("GetQuiz", {"quiz_id": qid}, target.host))["quiz"]
        assert quiz["quiz_id"] == qid
    try:
        await api.call("GetLeaderboard", {"quiz_id": target.running_id})
    except ApiError as e:  # pragma: no cover - reported as a failure with its code
        raise AssertionError(e) from e
