"""Load generator processes of the intake benchmark.

Each worker process runs one uvloop loop, keeps its HTTP/2 and HTTP/1.1
connections across phases and answers through its own quizzes only, so it can
advance a quiz itself (AdvanceQuestion, as the host) once every player answered
the open question and no answer of it is in flight: every answer sent is a new
(quiz, question, player), none a duplicate, none late.

A phase is closed loop (`concurrency` callers per worker, each sending as soon as
its last call came back) or open loop (`rate` calls/s per worker on a fixed
schedule; a call's latency counts from when it was due, so a slow server cannot
hide its queueing by slowing the generator down).

gRPC calls (echo, SubmitAnswer) go through benchmarks/_intake_h2.py, every request
pre-encoded before the phase starts, so a call costs the generator tens of
microseconds, not the hundreds grpc.aio's client costs (as much as the server's).
Only AdvanceQuestion, two calls per question, uses grpc.aio.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import json
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Literal, cast

import grpc
import uvloop
from quizmesh.quiz.v1 import quiz_pb2
from quizmesh.score.v1 import score_pb2

from benchmarks._h2 import grpc_message, request_headers
from benchmarks._intake_echo import METHOD as ECHO_METHOD
from benchmarks._intake_h2 import CallError, UnaryClient

SUBMIT_METHOD = "/quizmesh.score.v1.ScoreService/SubmitAnswer"
ADVANCE_METHOD = "/quizmesh.quiz.v1.QuizService/AdvanceQuestion"
CALL_TIMEOUT_SECONDS = 10.0
# Open loop: beyond this many calls in flight per worker the generator stops sending
# (and counts what it skipped) rather than pile up without bound.
MAX_IN_FLIGHT = 2000

Kind = Literal["echo", "grpc", "http"]
# A player's HPACK block, and the DATA payload of each (question, choice).
Encoded = tuple[list[bytes], list[list[bytes]]]


@dataclass(frozen=True)
class QuizPlan:
    """A running quiz whose players only this worker answers for."""

    quiz_id: str
    host_token: str
    question_count: int
    # (player id, bearer token)
    players: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class WorkerSpec:
    index: int
    quizzes: tuple[QuizPlan, ...]
    quiz_target: str
    # HTTP/2 connections per worker: several, so SO_REUSEPORT server processes share them.
    connections: int = 4


@dataclass(frozen=True)
class Phase:
    kind: Kind
    target: str
    start_at: float  # time.time() when sending starts (the same for every worker)
    warmup: float
    seconds: float
    concurrency: int = 0  # closed loop: callers per worker
    rate: float = 0.0  # open loop: calls per second per worker
    limit: int = 0  # closed loop: stop after this many calls per worker (0: no limit)


@dataclass
class PhaseResult:
    completed: int = 0  # successful calls that finished inside the measured window
    latencies: bytes = b""  # array("d") of their latencies in seconds
    errors: dict[str, int] = field(default_factory=dict)
    not_sent: int = 0
    # Calls that had to wait for a quiz to advance before they could be sent.
    source_waits: int = 0
    client_cpu_seconds: float = 0.0
    exhausted: bool = False


# --- the answers ------------------------------------------------------------------------


class _QuizCursor:
    def __init__(self, plan: QuizPlan) -> None:
        self.plan = plan
        self.question = 0
        self.next_player = 0
        self.in_flight = 0
        self.advancing = False
        self.finished = False
        self.http_auth = [f"Authorization: Bearer {t}\r\n".encode() for _, t in plan.players]
        self._encoded: dict[tuple[str, str], Encoded] = {}

    def encoded(self, authority: str, path: str) -> Encoded:
        """Every request this quiz can send to `path`, encoded once."""
        key = (authority, path)
        if key not in self._encoded:
            plan = self.plan
            headers = [request_headers(authority, path, token) for _, token in plan.players]
            bodies = [
                [
                    grpc_message(
                        score_pb2.SubmitAnswerRequest(
                            quiz_id=plan.quiz_id, question_index=q, choice_index=c
                        ).SerializeToString()
                    )
                    for c in range(3)
                ]
                for q in range(plan.question_count)
            ]
            self._encoded[key] = (headers, bodies)
        return self._encoded[key]

    @property
    def open(self) -> bool:
        return not (self.advancing or self.finished) and self.next_player < len(self.plan.players)


@dataclass(frozen=True, slots=True)
class Ticket:
    cursor: _QuizCursor
    player: int
    question: int

    @property
    def choice(self) -> int:
        # A mix of right and wrong answers (the quizzes' correct choice is q % 3).
        return (self.player + self.question) % 3


class AnswerSource:
    """Hands out fresh (quiz, question, player) triples; one quiz at a time, so the
    others can advance meanwhile without stalling the callers."""

    def __init__(self, plans: tuple[QuizPlan, ...], advance: Callable[[QuizPlan], Awaitable[None]]):
        self.cursors = [_QuizCursor(p) for p in plans]
        self._advance = advance
        self._current = 0
        self._changed = asyncio.Event()
        self.advance_errors: Counter[str] = Counter()
        self.waits = 0

    @property
    def exhausted(self) -> bool:
        return all(c.finished for c in self.cursors)

    def _take(self) -> Ticket | None:
        n = len(self.cursors)
        for step in range(n):
            cursor = self.cursors[(self._current + step) % n]
            if cursor.open:
                self._current = (self._current + step) % n
                ticket = Ticket(cursor, cursor.next_player, cursor.question)
                cursor.next_player += 1
                cursor.in_flight += 1
                return ticket
        return None

    async def next(self) -> Ticket | None:
        """The next answer to send; None once every quiz has run out of questions."""
        ticket = self._take()
        if ticket is not None:
            return ticket
        self.waits += 1
        while ticket is None and not self.exhausted:
            self._changed.clear()
            await self._changed.wait()
            ticket = self._take()
        return ticket

    def done(self, ticket: Ticket) -> None:
        cursor = ticket.cursor
        cursor.in_flight -= 1
        if cursor.in_flight == 0 and not cursor.open and not cursor.advancing:
            if cursor.question + 1 >= cursor.plan.question_count:
                cursor.finished = True
                self._changed.set()
            else:
                cursor.advancing = True
                asyncio.get_running_loop().create_task(self._advance_cursor(cursor))

    async def _advance_cursor(self, cursor: _QuizCursor) -> None:
        while True:
            try:
                await self._advance(cursor.plan)
                break
            except grpc.aio.AioRpcError as e:
                self.advance_errors[f"AdvanceQuestion {e.code().name}"] += 1
                await asyncio.sleep(0.1)
        cursor.question += 1
        cursor.next_player = 0
        cursor.advancing = False
        self._changed.set()


# --- HTTP/1.1 through Envoy -------------------------------------------------------------


class _HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time: a few microseconds
    of Python per request, so the generator leaves the CPU to the servers."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed by Envoy"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        response = self._parse()
        if response is not None and self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(response)

    def _parse(self) -> tuple[int, bytes] | None:
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return None
        head = bytes(self.buffer[:head_end]).lower()
        status = int(head[9:12])
        body_start = head_end + 4
        marker = head.find(b"\r\ncontent-length:")
        if marker >= 0:
            line_end = head.find(b"\r\n", marker + 2)
            length = int(head[marker + 17 : line_end if line_end >= 0 else None])
            if len(self.buffer) < body_start + length:
                return None
            content = bytes(self.buffer[body_start : body_start + length])
            del self.buffer[: body_start + length]
            return status, content
        # Chunked transfer encoding.
        body = bytearray()
        at = body_start
        while True:
            size_end = self.buffer.find(b"\r\n", at)
            if size_end < 0:
                return None
            size = int(bytes(self.buffer[at:size_end]).split(b";")[0], 16)
            if len(self.buffer) < size_end + 2 + size + 2:
                return None
            body += self.buffer[size_end + 2 : size_end + 2 + size]
            at = size_end + 2 + size + 2
            if size == 0:
                del self.buffer[:at]
                return status, bytes(body)

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter


class _HttpPool:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.idle: list[_HttpConnection] = []

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        conn = self.idle.pop() if self.idle else None
        if conn is None or conn.closed:
            loop = asyncio.get_running_loop()
            _, conn = await loop.create_connection(_HttpConnection, self.host, self.port)
        result = await conn.request(raw)
        if not conn.closed:
            self.idle.append(conn)
        return result

    def close(self) -> None:
        for conn in self.idle:
            if conn.transport is not None:
                conn.transport.close()
        self.idle.clear()


# --- one worker process -----------------------------------------------------------------


class Worker:
    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.quiz_channel = grpc.aio.insecure_channel(spec.quiz_target)
        advance = self.quiz_channel.unary_unary(
            ADVANCE_METHOD,
            request_serializer=quiz_pb2.AdvanceQuestionRequest.SerializeToString,
            response_deserializer=quiz_pb2.AdvanceQuestionResponse.FromString,
        )

        async def advance_quiz(plan: QuizPlan) -> None:
            # The questions last 10 minutes, so each is still open: the first call
            # ends (reveals) it, the second opens the next one (or finishes).
            request = quiz_pb2.AdvanceQuestionRequest(quiz_id=plan.quiz_id)
            metadata = (("authorization", f"Bearer {plan.host_token}"),)
            for _ in range(2):
                await advance(request, metadata=metadata, timeout=CALL_TIMEOUT_SECONDS)

        self.source = AnswerSource(spec.quizzes, advance_quiz)
        self.clients: dict[str, UnaryClient] = {}
        self.pools: dict[str, _HttpPool] = {}

    async def _client(self, target: str) -> UnaryClient:
        if target not in self.clients:
            host, _, port = target.rpartition(":")
            client = UnaryClient(host, int(port), self.spec.connections)
            await client.start()
            self.clients[target] = client
        return self.clients[target]

    async def _caller(self, phase: Phase, errors: Counter[str]) -> Callable[[], Awaitable[bool]]:
        """One call of the phase's kind; True when it succeeded as expected. Every
        gRPC request is encoded here, before the phase starts."""
        source = self.source
        if phase.kind == "echo":
            client = await self._client(phase.target)
            # The client sends what it sends for SubmitAnswer (a player's token, a
            # request of the same size) and parses the reply; only the server differs.
            seats = [
                (headers[p], bodies)
                for c in source.cursors
                for headers, bodies in [c.encoded(client.authority, ECHO_METHOD)]
                for p in range(len(c.plan.players))
            ]
            turn = 0

            async def echo() -> bool:
                nonlocal turn
                turn += 1
                headers, bodies = seats[turn % len(seats)]
                try:
                    reply = await client.call(turn, headers, bodies[turn % len(bodies)][turn % 3])
                except (CallError, OSError) as e:
                    errors[str(e) or type(e).__name__] += 1
                    return False
                score_pb2.SubmitAnswerResponse.FromString(reply)
                return True

            return echo

        if phase.kind == "grpc":
            client = await self._client(phase.target)
            encoded = {c: c.encoded(client.authority, SUBMIT_METHOD) for c in source.cursors}

            async def submit() -> bool:
                ticket = await source.next()
                if ticket is None:
                    errors["out of answers"] += 1
                    return False
                headers, bodies = encoded[ticket.cursor]
                try:
                    # A player keeps to one connection, as a real client does.
                    reply = await client.call(
                        ticket.player,
                        headers[ticket.player],
                        bodies[ticket.question][ticket.choice],
                    )
                except (CallError, OSError) as e:
                    errors[str(e) or type(e).__name__] += 1
                    return False
                finally:
                    source.done(ticket)
                if score_pb2.SubmitAnswerResponse.FromString(reply).replayed:
                    errors["replayed (a duplicate answer)"] += 1
                    return False
                return True

            return submit

        host, _, port = phase.target.rpartition(":")
        pool = self.pools.setdefault(phase.target, _HttpPool(host, int(port)))

        async def post() -> bool:
            ticket = await source.next()
            if ticket is None:
                errors["out of answers"] += 1
                return False
            cursor = ticket.cursor
            body = b'{"question_index":%d,"choice_index":%d}' % (ticket.question, ticket.choice)
            raw = b"".join(
                (
                    b"POST /v1/quizzes/%s/answers HTTP/1.1\r\n" % cursor.plan.quiz_id.encode(),
                    b"Host: bench\r\nContent-Type: application/json\r\n",
                    cursor.http_auth[ticket.player],
                    b"Content-Length: %d\r\n\r\n" % len(body),
                    body,
                )
            )
            try:
                status, answer = await asyncio.wait_for(pool.request(raw), CALL_TIMEOUT_SECONDS)
            except (OSError, TimeoutError) as e:
                errors[type(e).__name__] += 1
                return False
            finally:
                source.done(ticket)
            if status != 200:
                errors[f"HTTP {status}: {answer[:80].decode(errors='replace')}"] += 1
                return False
            if json.loads(answer).get("replayed"):
                errors["replayed (a duplicate answer)"] += 1
                return False
            return True

        return post

    async def run(self, phase: Phase) -> PhaseResult:
        errors: Counter[str] = Counter()
        call = await self._caller(phase, errors)
        # Our clock for the shared wall-clock start.
        start = time.perf_counter() + (phase.start_at - time.time())
        window = start + phase.warmup
        end = window + phase.seconds
        latencies = array.array("d")
        completed = 0
        waits_before = self.source.waits
        await asyncio.sleep(max(0.0, start - time.perf_counter()))
        cpu: list[float] = []

        async def mark_cpu_at_window() -> None:
            await asyncio.sleep(max(0.0, window - time.perf_counter()))
            cpu.append(_own_cpu())

        loop = asyncio.get_running_loop()
        marker = loop.create_task(mark_cpu_at_window())
        # One timer per phase, not per call: what has no reply 10 s after the end fails.
        client = self.clients.get(phase.target) if phase.kind != "http" else None
        expiry = loop.call_later(
            max(0.0, end - time.perf_counter()) + CALL_TIMEOUT_SECONDS,
            client.expire if client else lambda _: None,
            f"no reply within {CALL_TIMEOUT_SECONDS:.0f} s",
        )

        async def timed(due: float) -> None:
            nonlocal completed
            ok = await call()
            done = time.perf_counter()
            if ok and window <= done <= end:
                completed += 1
                latencies.append(done - due)

        not_sent = 0
        if phase.rate <= 0:
            sent = 0

            async def caller() -> None:
                nonlocal sent
                while time.perf_counter() < end and not self.source.exhausted:
                    if phase.limit and sent >= phase.limit:
                        return
                    sent += 1
                    await timed(time.perf_counter())

            await asyncio.gather(*(caller() for _ in range(phase.concurrency)))
        else:
            interval = 1.0 / phase.rate
            tasks: set[asyncio.Task[None]] = set()
            scheduled = 0
            while (now := time.perf_counter()) < end:
                due_count = int((now - start) * phase.rate) + 1
                while scheduled < due_count:
                    due = start + scheduled * interval
                    scheduled += 1
                    if len(tasks) >= MAX_IN_FLIGHT:
                        not_sent += 1
                        continue
                    task = loop.create_task(timed(due))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                # Not below 1 ms: uvloop's timers count whole milliseconds, and a
                # shorter sleep returns at once (the generator would spin).
                await asyncio.sleep(max(0.001, min(interval, 0.002)))
            if tasks:
                await asyncio.wait(tasks, timeout=CALL_TIMEOUT_SECONDS + 1)
        cpu.append(_own_cpu())
        marker.cancel()
        expiry.cancel()
        errors.update(self.source.advance_errors)
        self.source.advance_errors.clear()
        return PhaseResult(
            completed=completed,
            latencies=latencies.tobytes(),
            errors=dict(errors),
            not_sent=not_sent,
            source_waits=self.source.waits - waits_before,
            client_cpu_seconds=cpu[-1] - cpu[0] if len(cpu) == 2 else 0.0,
            exhausted=self.source.exhausted,
        )

    async def close(self) -> None:
        for client in self.clients.values():
            client.close()
        for pool in self.pools.values():
            pool.close()
        await self.quiz_channel.close()


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


def worker_main(spec: WorkerSpec, conn: Connection) -> None:
    """A worker process: runs each Phase it receives, replies with a PhaseResult;
    None ends it."""
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    worker = Worker(spec)
    try:
        while (phase := conn.recv()) is not None:
            conn.send(loop.run_until_complete(worker.run(phase)))
    finally:
        with contextlib.suppress(Exception):
            loop.run_until_complete(worker.close())
        loop.close()
