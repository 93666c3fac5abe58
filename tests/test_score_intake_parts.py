"""The score service's fast-path parts against real servers: the pipelined Redis
connection, the JetStream answer log and the verified-token cache."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.msg import Msg
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from devstack.infra import ValkeyServer
from services.identity.tokens import Caller, Role, TokenVerifier
from services.live.pipeline import PipelinedRedis, RedisAddress
from services.mesh.errors import Unauthenticated
from services.mesh.messaging import Subjects, ensure_streams
from services.score.answer_log import AnswerLog
from services.score.hints import BoardHints
from services.score.tokens import KnownTokens
from tests.stack import Backends, forget

# --- PipelinedRedis -------------------------------------------------------------------


def test_redis_urls_say_host_port_database_and_credentials() -> None:
    a = RedisAddress.parse("redis://:s3cret@10.0.0.3:6380/2")
    assert (a.host, a.port, a.db, a.username, a.password, a.tls) == (
        "10.0.0.3",
        6380,
        2,
        None,
        "s3cret",
        None,
    )
    tls = RedisAddress.parse("rediss://user:p%40ss@cache:6379/0?ssl_cert_reqs=none")
    assert (tls.username, tls.password, tls.tls is not None) == ("user", "p@ss", True)
    with pytest.raises(ValueError, match="redis:// or rediss://"):
        RedisAddress.parse("unix:///run/redis.sock")


async def test_concurrent_calls_on_one_connection_get_their_own_replies(
    backends: Backends,
) -> None:
    pipe = PipelinedRedis(RedisAddress.parse(backends.redis_url))
    key = f"pipe{uuid.uuid4().hex}"
    try:
        replies = await asyncio.gather(*(pipe.call("ECHO", f"m{i}") for i in range(500)))
        assert replies == [f"m{i}" for i in range(500)]
        counts = await asyncio.gather(*(pipe.call("INCR", key) for _ in range(100)))
        assert sorted(counts) == list(range(1, 101))
        with pytest.raises(NoScriptError):
            await pipe.call("EVALSHA", "0" * 40, 0)
        with pytest.raises(ResponseError):
            await pipe.call("INCR")  # wrong number of arguments
        assert await pipe.call("ECHO", "still usable") == "still usable"
    finally:
        await pipe.call("DEL", key)
        await pipe.close()


async def test_a_restarted_redis_fails_the_calls_in_flight_then_reconnects(
    private_redis: ValkeyServer,
) -> None:
    pipe = PipelinedRedis(RedisAddress.parse(private_redis.url), timeout=2.0)
    try:
        assert await pipe.call("PING") == "PONG"
        await private_redis.kill()
        with pytest.raises(RedisConnectionError):
            await pipe.call("PING")
        await private_redis.start()
        assert await pipe.call("PING") == "PONG"
    finally:
        await pipe.close()


async def test_a_redis_that_stops_answering_times_out(private_redis: ValkeyServer) -> None:
    pipe = PipelinedRedis(RedisAddress.parse(private_redis.url), timeout=0.5)
    assert private_redis.pid is not None
    try:
        assert await pipe.call("PING") == "PONG"
        os.kill(private_redis.pid, signal.SIGSTOP)  # alive, connected, silent
        started = time.monotonic()
        with pytest.raises(RedisTimeoutError):
            await asyncio.gather(pipe.call("PING"), pipe.call("PING"))
        assert time.monotonic() - started < 1.5
        os.kill(private_redis.pid, signal.SIGCONT)
        assert await pipe.call("PING") == "PONG"
    finally:
        os.kill(private_redis.pid, signal.SIGCONT)
        await pipe.close()


async def test_paced_calls_share_a_write_and_a_lone_call_goes_at_once(
    backends: Backends,
) -> None:
    writes: list[float] = []
    gap = 0.5
    pipe = PipelinedRedis(
        RedisAddress.parse(backends.redis_url), min_gap=gap, observe_batch=writes.append
    )
    try:
        await asyncio.sleep(0)
        started = time.monotonic()
        assert await pipe.call("PING") == "PONG"  # the first write: nothing to wait for
        assert time.monotonic() - started < gap / 2
        calls = []
        for i in range(20):  # one per loop turn, as grpc.aio starts calls
            calls.append(asyncio.ensure_future(pipe.call("ECHO", f"m{i}")))
            await asyncio.sleep(0)
        assert await asyncio.gather(*calls) == [f"m{i}" for i in range(20)]
        assert writes == [1, 20]
        await asyncio.sleep(gap)  # a quiet spell: the next call goes at once
        started = time.monotonic()
        assert await pipe.call("PING") == "PONG"
        assert time.monotonic() - started < gap / 2
        assert writes == [1, 20, 1]
    finally:
        await pipe.close()


# --- AnswerLog -------------------------------------------------------------------------


@pytest.fixture
async def answer_log(backends: Backends) -> AsyncIterator[tuple[AnswerLog, Subjects]]:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    subjects = Subjects(prefix)
    nc = await nats.connect(backends.nats_url)
    await ensure_streams(nc.jetstream(), subjects)
    log = AnswerLog(nc, timeout=0.5)
    await log.start()
    try:
        yield log, subjects
    finally:
        await log.stop()
        await nc.drain()
        await forget(backends, f"{prefix}:", prefix)


async def test_records_are_stored_once_however_often_they_are_sent(
    answer_log: tuple[AnswerLog, Subjects], backends: Backends
) -> None:
    log, subjects = answer_log
    sends = [
        log.record(
            subjects.answers("QZ"), f"answer {i % 50}".encode(), {"Nats-Msg-Id": f"QZ:0:{i % 50}"}
        )
        for i in range(200)
    ]
    await asyncio.gather(*sends)  # every one confirmed, duplicates included
    nc = await nats.connect(backends.nats_url)
    try:
        info = await nc.jetstream().stream_info(subjects.answers_stream)
        assert info.state.messages == 50
    finally:
        await nc.close()


async def test_paced_records_share_a_write(
    answer_log: tuple[AnswerLog, Subjects], backends: Backends
) -> None:
    _, subjects = answer_log
    writes: list[float] = []
    nc = await nats.connect(backends.nats_url)
    log = AnswerLog(nc, timeout=2.0, min_gap=0.5, observe_batch=writes.append)
    await log.start()
    try:
        subject = subjects.answers("QZ")
        await log.record(subject, b"first", {"Nats-Msg-Id": "QZ:0:first"})
        records = []
        for i in range(20):  # one per loop turn, as grpc.aio starts calls
            records.append(
                asyncio.ensure_future(log.record(subject, b"a", {"Nats-Msg-Id": f"QZ:0:{i}"}))
            )
            await asyncio.sleep(0)
        await asyncio.gather(*records)
        assert writes == [1, 20]
    finally:
        await log.stop()
        await nc.close()


async def test_a_record_nobody_stores_is_refused(answer_log: tuple[AnswerLog, Subjects]) -> None:
    log, _ = answer_log
    with pytest.raises(nats.errors.NoRespondersError):
        await log.record(f"nostream{uuid.uuid4().hex}.answers.QZ", b"x", {})


async def test_a_record_without_an_ack_times_out(
    answer_log: tuple[AnswerLog, Subjects], backends: Backends
) -> None:
    log, _ = answer_log
    subject = f"silent{uuid.uuid4().hex}"
    nc = await nats.connect(backends.nats_url)
    try:
        await nc.subscribe(subject)  # a responder that never answers
        await nc.flush()  # the server knows of it before we publish
        started = time.monotonic()
        with pytest.raises(nats.errors.TimeoutError):
            await log.record(subject, b"x", {})
        assert 0.5 <= time.monotonic() - started < 1.5
    finally:
        await nc.close()


# --- KnownTokens -----------------------------------------------------------------------


class _Context:
    def __init__(self, token: str) -> None:
        self.token = token

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()


def test_a_known_token_is_not_verified_again_until_it_expires(backends: Backends) -> None:
    verifier = TokenVerifier.from_file(backends.jwks_file, "quizmesh", "quizmesh")
    calls = 0
    verified = verifier.verified

    def counting(token: str) -> tuple[Caller, float]:
        nonlocal calls
        calls += 1
        return verified(token)

    verifier.verified = counting  # type: ignore[method-assign]
    now = time.time()
    tokens = KnownTokens(verifier, capacity=2, clock=lambda: now)
    player = backends.issuer().issue(Role.PLAYER, "p1", 60, quiz_id="QZ")
    first = tokens.caller(_Context(player))  # type: ignore[arg-type]
    assert tokens.caller(_Context(player)) == first  # type: ignore[arg-type]
    assert calls == 1
    now += 61  # past its expiry as the cache sees it: verified again
    assert tokens.caller(_Context(player)) == first  # type: ignore[arg-type]
    assert calls == 2
    for bad in ("", "not-a-token"):
        with pytest.raises(Unauthenticated):
            tokens.caller(_Context(bad))  # type: ignore[arg-type]
    assert len(tokens) == 1  # only the valid one is remembered
    for name in ("a", "b", "c"):
        tokens.caller(_Context(backends.issuer().issue(Role.PLAYER, name, 60, quiz_id="QZ")))  # type: ignore[arg-type]
    assert len(tokens) == 2  # the oldest made room


# --- BoardHints ------------------------------------------------------------------------


async def test_a_burst_of_changes_is_hinted_at_once_and_once_at_its_end(
    backends: Backends,
) -> None:
    subjects = Subjects(f"t{uuid.uuid4().hex[:10]}")
    nc = await nats.connect(backends.nats_url)
    heard: list[tuple[str, float]] = []

    async def hear(msg: Msg) -> None:
        heard.append((Subjects.quiz_of(msg.subject), time.monotonic()))

    subscription = await nc.subscribe(subjects.all("board"), cb=hear)
    hints = BoardHints(nc, subjects, interval=0.3)
    try:
        began = time.monotonic()
        for _ in range(100):  # a burst of answers to one quiz, and one to another
            hints.changed("QA")
            await asyncio.sleep(0.001)
        hints.changed("QB")
        await asyncio.sleep(0.5)
        hints.changed("QA")  # after a quiet interval: told at once again
        await hints.stop()
        await nc.flush()
        await asyncio.sleep(0.1)

        assert [quiz for quiz, _ in heard] == ["QA", "QB", "QA", "QA"]
        assert heard[0][1] - began < 0.1  # the first at once
        assert heard[2][1] - began >= 0.3  # the burst's end, one interval after its start
    finally:
        await subscription.unsubscribe()
        await nc.close()
