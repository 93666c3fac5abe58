"""What the fault tests share: a quiz played under load by clients that retry, the
log of every answer they saw acknowledged, the ranking that log implies, checks
of Redis and SQL against it, and the processes a test kills (score service, sync
job) or cuts off (a TCP proxy in front of MySQL).

The log is the client's side of the contract: whatever the servers went through,
each acknowledged answer must count exactly once, with the points and time the
acknowledgement carried.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import signal
import sys
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import nats
from grpc_health.v1 import health_pb2, health_pb2_grpc
from quizmesh.common.v1 import common_pb2, events_pb2
from quizmesh.leaderboard.v1 import leaderboard_pb2, leaderboard_pb2_grpc
from quizmesh.quiz.v1 import quiz_pb2
from quizmesh.score.v1 import score_pb2, score_pb2_grpc
from quizmesh.stream.v1 import stream_pb2
from sqlalchemy import text
from sqlalchemy.engine import make_url

from devstack.infra import ManagedProcess, free_port
from services.database.engine import create_engine
from services.mesh.messaging import Subjects
from tests.stack import Backends, Stack, bearer, forget, start_service

REPO = Path(__file__).resolve().parents[2]
ALL_SERVICES = ("quiz", "score", "leaderboard", "stream")

# Clients must find a restarted server within a fraction of a second, not after
# grpc-core's default reconnect backoff (1 s growing to 120 s).
CLIENT_CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
    ("grpc.enable_retries", 0),  # the clients below retry by hand, and count it
]
# What a client may retry unchanged (DESIGN.md: SubmitAnswer is idempotent).
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
ATTEMPT_TIMEOUT_SECONDS = 3.0


# --- the stack, with some services in-process ------------------------------------------


@contextlib.asynccontextmanager
async def fault_stack(
    backends: Backends, services: Iterable[str] = ALL_SERVICES, **overrides: Any
) -> AsyncIterator[Stack]:
    """Like tests.stack.running_stack, but only `services` run in-process (a test
    runs the others as processes it can kill) and `backends` may be private servers."""
    tag = uuid.uuid4().hex[:10]
    stack = Stack(backends, key_prefix=f"f{tag}:", nats_prefix=f"f{tag}")
    try:
        for name in services:
            await start_service(stack, name, **overrides)
        yield stack
    finally:
        for app in stack.apps.values():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(app.stop(1.0), 15)
        for channel in stack.channels.values():
            await channel.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(forget(backends, stack.key_prefix, stack.nats_prefix), 15)


# --- child processes --------------------------------------------------------------------


def quizmesh_env(settings: Mapping[str, Any]) -> dict[str, str]:
    """Our environment with settings as QUIZMESH_* variables (and no stray ones)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUIZMESH_")}
    env.update({f"QUIZMESH_{name.upper()}": str(value) for name, value in settings.items()})
    return env


class ServiceProcess(ManagedProcess):
    """`python -m services.<name>.server` on a fixed port: a restart keeps the address
    the clients know, as a restarted pod keeps its Service."""

    def __init__(self, name: str, settings: Mapping[str, Any], log_file: Path) -> None:
        self.port = int(settings["grpc_port"])
        super().__init__(
            name,
            [sys.executable, "-m", f"services.{name}.server"],
            env=quizmesh_env(settings),
            cwd=REPO,
            log_file=log_file,
            ready_timeout=30.0,
        )

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def ready(self) -> bool:
        try:
            async with grpc.aio.insecure_channel(self.target) as channel:
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=1.0
                )
        except grpc.aio.AioRpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def sync_settings(stack: Stack, **overrides: Any) -> dict[str, Any]:
    """The sync job's settings for a test's stack: closed quizzes become final at once."""
    return {
        **stack.common(),
        "sync_final_grace_seconds": 0,
        **overrides,
    }


@dataclass(frozen=True)
class SyncResult:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def describe(self) -> str:
        return (
            f"quizmesh-sync exited {self.returncode} after {self.seconds:.1f} s\n"
            f"--- stderr ---\n{self.stderr[-4000:]}\n--- stdout ---\n{self.stdout[-2000:]}"
        )


class SyncCommand:
    """One run of the sync job as a CronJob would start it: `python -m services.sync`
    with QUIZMESH_* settings; stdout and stderr kept apart."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.env = quizmesh_env(settings)
        self._process: asyncio.subprocess.Process | None = None
        self._output: asyncio.Future[tuple[bytes, bytes]] | None = None
        self._started = 0.0

    async def start(self) -> None:
        self._started = time.monotonic()
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.sync",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
            cwd=REPO,
            start_new_session=True,
        )
        self._output = asyncio.ensure_future(self._process.communicate())

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def kill(self) -> SyncResult:
        """SIGKILL, as an evicted pod or an OOM kill would end it."""
        assert self._process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGKILL)
        return await self.wait()

    async def wait(self, within: float = 60.0) -> SyncResult:
        assert self._process is not None
        assert self._output is not None
        try:
            out, err = await asyncio.wait_for(asyncio.shield(self._output), within)
        except TimeoutError:
            await self.kill()
            raise AssertionError(f"the sync job did not finish within {within:g} s") from None
        return SyncResult(
            returncode=self._process.returncode if self._process.returncode is not None else -1,
            stdout=out.decode(errors="replace"),
            stderr=err.decode(errors="replace"),
            seconds=time.monotonic() - self._started,
        )

    async def run(self, within: float = 60.0) -> SyncResult:
        await self.start()
        return await self.wait(within)


async def sync_to_sql(stack: Stack, **overrides: Any) -> SyncResult:
    """One successful sync run of the stack's answers into its database."""
    result = await SyncCommand(sync_settings(stack, **overrides)).run()
    assert result.returncode == 0, result.describe()
    return result


def host_and_port(url: str) -> tuple[str, int]:
    """The server address in a redis://, nats:// or SQLAlchemy URL."""
    parsed = urllib.parse.urlsplit(url)
    assert parsed.hostname, f"no host in {url}"
    assert parsed.port, f"no port in {url}"
    return parsed.hostname, parsed.port


# --- a TCP proxy that makes a server unreachable ----------------------------------------


class TcpProxy:
    """Forwards 127.0.0.1:`port` to an upstream server. `stop()` refuses new
    connections and cuts the open ones, as a network partition or a dead server
    would look to a client, without touching the server itself; `hold()` keeps
    what clients send from reaching the server (a stall), and a `stop()` then
    drops it."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        # What clients sent to the server through the proxy.
        self.bytes_sent = 0
        self._cut_at: int | None = None
        self._cutting: asyncio.Task[None] | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    def url_for(self, database_url: str) -> str:
        """`database_url` with the proxy as its host."""
        return (
            make_url(database_url)
            .set(host="127.0.0.1", port=self.port)
            .render_as_string(hide_password=False)
        )

    async def __aenter__(self) -> TcpProxy:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    @property
    def listening(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        self._flowing.set()
        if self._server is None:
            self._server = await asyncio.start_server(
                self._accept, "127.0.0.1", self.port, reuse_address=True
            )

    def hold(self) -> None:
        self._flowing.clear()

    def cut_after(self, upstream_bytes: int) -> None:
        """Behaves as `stop()` once clients have sent `upstream_bytes` more: the
        server goes away in the middle of whatever they were doing."""
        self._cut_at = self.bytes_sent + upstream_bytes

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            upstream_r, upstream_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.transport.abort()
            return
        self._writers |= {client_w, upstream_w}
        for task in (
            asyncio.create_task(self._pipe(client_r, upstream_w, client_w, upstream=True)),
            asyncio.create_task(self._pipe(upstream_r, client_w, upstream_w, upstream=False)),
        ):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        own: asyncio.StreamWriter,
        upstream: bool,
    ) -> None:
        try:
            while data := await source.read(65536):
                if upstream:
                    await self._flowing.wait()
                    if self._cut_at is not None and self.bytes_sent + len(data) > self._cut_at:
                        self._cut_at = None
                        self._cutting = asyncio.create_task(self.stop())
                        return
                    self.bytes_sent += len(data)
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for writer in (sink, own):
                self._writers.discard(writer)
                writer.transport.abort()


# --- the quiz, its players and the client-side log --------------------------------------

CHOICES = ("north", "east", "south", "west")


@dataclass(frozen=True)
class QuizPlan:
    """How a test's quiz is played. Every player answers every question, at a steady
    rate over `answer_window_seconds`; a third of the answers are wrong, and every
    player gets at least one right (so the ranking never depends on join times)."""

    players: int = 200
    questions: int = 4
    answer_window_seconds: float = 3.0
    # Long enough that a fault never makes an answer late; 1000 points over 60 s
    # means one point per 120 ms, so many players tie on totals and the order of
    # reaching them decides.
    time_limit_ms: int = 60_000
    points: int = 1000
    # A client gives up on an answer (and the test fails) after retrying this long;
    # every fault here heals within a few seconds.
    give_up_after_seconds: float = 20.0
    # At most this many answers wait for their acknowledgement at once (a backlog
    # is sent as fast as the score service takes it, but not all at once).
    max_in_flight: int = 1000

    def __post_init__(self) -> None:
        assert self.questions >= 2, "with one question some players would never score"

    @property
    def answers(self) -> int:
        return self.players * self.questions

    def correct_choice(self, question: int) -> int:
        return question % len(CHOICES)

    def choice(self, player: int, question: int) -> int:
        right = self.correct_choice(question)
        return right if (player + question) % 3 else (right + 1) % len(CHOICES)

    def create_request(self, title: str) -> quiz_pb2.CreateQuizRequest:
        return quiz_pb2.CreateQuizRequest(
            title=title,
            questions=[
                quiz_pb2.QuestionSpec(
                    text=f"Which way is question {q}?",
                    choices=list(CHOICES),
                    correct_choice=self.correct_choice(q),
                    points=self.points,
                    time_limit_ms=self.time_limit_ms,
                )
                for q in range(self.questions)
            ],
        )


@dataclass(frozen=True)
class Player:
    index: int
    player_id: str
    nickname: str
    token: str


@dataclass(frozen=True)
class Ack:
    """An acknowledged answer as the client saw it."""

    player_id: str
    question: int
    choice: int
    correct: bool
    points: int
    answered_ms: int
    total_score: int
    replayed: bool
    attempts: int

    @property
    def result(self) -> tuple[int, int, bool, int, int]:
        """What a replay must repeat exactly."""
        return (self.question, self.choice, self.correct, self.points, self.answered_ms)

    @classmethod
    def of(cls, player_id: str, reply: score_pb2.SubmitAnswerResponse, attempts: int) -> Ack:
        r = reply.result
        return cls(
            player_id=player_id,
            question=r.question_index,
            choice=r.choice_index,
            correct=r.correct,
            points=r.points_awarded,
            answered_ms=r.answered_at.ToMilliseconds(),
            total_score=reply.total_score,
            replayed=reply.replayed,
            attempts=attempts,
        )


class AnswerLog:
    """Every acknowledged answer, every refusal, and how often clients had to retry."""

    def __init__(self) -> None:
        self.acks: dict[tuple[str, int], Ack] = {}
        self.problems: list[str] = []
        self.retried: Counter[str] = Counter()
        self._by_player: dict[str, list[Ack]] = {}
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def acknowledged(self, ack: Ack) -> None:
        key = (ack.player_id, ack.question)
        first = self.acks.get(key)
        if first is None:
            self.acks[key] = ack
            self._by_player.setdefault(ack.player_id, []).append(ack)
        elif first.result != ack.result:
            self.problems.append(
                f"player {ack.player_id} q{ack.question}: acknowledged twice with different "
                f"results {first.result} then {ack.result}"
            )
        for count, waiter in list(self._waiters):
            if len(self.acks) >= count and not waiter.done():
                waiter.set_result(None)

    def retry(self, error: grpc.aio.AioRpcError) -> None:
        self.retried[f"{error.code().name}: {(error.details() or '')[:80]}"] += 1

    def refused(
        self, player_id: str, question: int, error: grpc.aio.AioRpcError, gave_up: bool
    ) -> None:
        why = "gave up retrying" if gave_up else "refused"
        self.problems.append(
            f"player {player_id} q{question} never acknowledged ({why}): "
            f"{error.code().name}: {error.details()}"
        )

    def describe_problems(self) -> str:
        """The problems, alike ones counted together (quiz codes and ids vary)."""
        kinds = Counter(re.sub(r"player \w+ q\d+ ", "", p) for p in self.problems)
        return f"{len(self.problems)} problems:\n" + "\n".join(
            f"  {n} x {kind}" for kind, n in kinds.most_common(10)
        )

    async def until(self, count: int) -> None:
        """Returns once `count` answers have been acknowledged."""
        if len(self.acks) >= count:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((count, waiter))
        await waiter

    def of(self, player_id: str) -> list[Ack]:
        """A player's acknowledged answers, in question order."""
        return sorted(self._by_player.get(player_id, []), key=_question)

    def summary(self) -> str:
        replays = sum(a.replayed for a in self.acks.values())
        retries = sum(self.retried.values())
        return (
            f"{len(self.acks)} answers acknowledged ({replays} as replays), {retries} retries"
            + "".join(f"\n  {n} x {what}" for what, n in self.retried.most_common(8))
        )


def _question(ack: Ack) -> int:
    return ack.question


class Game:
    """One quiz: a host that creates, starts, advances and closes it, and players
    who each answer through their own stub, straight to the score service at
    `score_target`, retrying the same request until it is acknowledged."""

    def __init__(
        self,
        stack: Stack,
        plan: QuizPlan,
        score_target: str | None = None,
        channels: int = 8,
        retry_on: frozenset[grpc.StatusCode] = RETRYABLE,
    ) -> None:
        self.stack = stack
        self.retry_on = retry_on
        self.plan = plan
        self.score_target = score_target or f"127.0.0.1:{stack.port('score')}"
        self.log = AnswerLog()
        self.players: list[Player] = []
        self.quiz_id = ""
        self.host_token = stack.host_token()
        self.host_problems: list[str] = []
        self._channel_count = channels
        self._channels: list[grpc.aio.Channel] = []

    async def __aenter__(self) -> Game:
        self._channels = [
            grpc.aio.insecure_channel(self.score_target, options=CLIENT_CHANNEL_OPTIONS)
            for _ in range(self._channel_count)
        ]
        return self

    async def __aexit__(self, *_: object) -> None:
        for channel in self._channels:
            await channel.close()

    def score_stub(self, player: Player) -> score_pb2_grpc.ScoreServiceStub:
        return score_pb2_grpc.ScoreServiceStub(self._channels[player.index % len(self._channels)])

    # The host.

    async def create_and_join(self) -> None:
        created = await self.stack.quiz.CreateQuiz(
            self.plan.create_request(f"fault test {uuid.uuid4().hex[:6]}"),
            metadata=bearer(self.host_token),
        )
        self.quiz_id = created.quiz.quiz_id
        limit = asyncio.Semaphore(32)

        async def join(index: int) -> Player:
            async with limit:
                nickname = f"player-{index:04d}"
                joined = await self.stack.quiz.JoinQuiz(
                    quiz_pb2.JoinQuizRequest(quiz_id=self.quiz_id, nickname=nickname)
                )
                return Player(index, joined.player_id, nickname, joined.player_token)

        self.players = list(await asyncio.gather(*(join(i) for i in range(self.plan.players))))

    async def open_question(self, question: int, within: float = 30.0) -> None:
        """Starts the quiz (question 0) or advances to `question`. Retried until the
        quiz shows it open: a call that failed may still have taken effect, so the
        host looks before repeating it (advancing twice would skip a question)."""
        deadline = time.monotonic() + within
        while True:
            try:
                quiz = (
                    await self.stack.quiz.GetQuiz(
                        quiz_pb2.GetQuizRequest(quiz_id=self.quiz_id),
                        metadata=bearer(self.host_token),
                        timeout=ATTEMPT_TIMEOUT_SECONDS,
                    )
                ).quiz
                if (
                    quiz.state == common_pb2.QUIZ_STATE_RUNNING
                    and quiz.current_question >= question
                ):
                    assert quiz.current_question == question, f"skipped to {quiz.current_question}"
                    return
                if quiz.state == common_pb2.QUIZ_STATE_OPEN:
                    await self.stack.quiz.StartQuiz(
                        quiz_pb2.StartQuizRequest(quiz_id=self.quiz_id),
                        metadata=bearer(self.host_token),
                        timeout=ATTEMPT_TIMEOUT_SECONDS,
                    )
                else:
                    await self.stack.quiz.AdvanceQuestion(
                        quiz_pb2.AdvanceQuestionRequest(quiz_id=self.quiz_id),
                        metadata=bearer(self.host_token),
                        timeout=ATTEMPT_TIMEOUT_SECONDS,
                    )
            except grpc.aio.AioRpcError as e:
                self.host_problems.append(f"opening q{question}: {e.code().name}: {e.details()}")
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"the host could not open question {question} within {within:g} s: "
                        f"{self.host_problems[-3:]}"
                    ) from e
                await asyncio.sleep(0.2)

    async def close(self, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while True:
            try:
                await self.stack.quiz.CloseQuiz(
                    quiz_pb2.CloseQuizRequest(quiz_id=self.quiz_id),
                    metadata=bearer(self.host_token),
                    timeout=ATTEMPT_TIMEOUT_SECONDS,
                )
                return
            except grpc.aio.AioRpcError as e:
                quiz = await self.stack.quiz.GetQuiz(quiz_pb2.GetQuizRequest(quiz_id=self.quiz_id))
                if quiz.quiz.state == common_pb2.QUIZ_STATE_CLOSED:
                    return
                self.host_problems.append(f"closing: {e.code().name}: {e.details()}")
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    # The players.

    async def play(self, questions: Iterable[int] | None = None) -> None:
        """Each question in turn: open it, then every player answers it once, spread
        evenly over the answer window; the next one opens when all are acknowledged."""
        for question in range(self.plan.questions) if questions is None else questions:
            await self.open_question(question)
            await self.answer(question)

    async def answer(self, question: int) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        step = self.plan.answer_window_seconds / max(1, len(self.players))
        in_flight = asyncio.Semaphore(self.plan.max_in_flight)

        async def one(player: Player) -> None:
            await asyncio.sleep(max(0.0, start + player.index * step - loop.time()))
            async with in_flight:
                await self.submit(player, question, self.plan.choice(player.index, question))

        await asyncio.gather(*(one(p) for p in self.players))

    async def submit(self, player: Player, question: int, choice: int) -> Ack | None:
        """Sends one answer until it is acknowledged (then logs it) or refused."""
        request = score_pb2.SubmitAnswerRequest(
            quiz_id=self.quiz_id, question_index=question, choice_index=choice
        )
        try:
            reply, attempts = await self.call_until_answered(
                player,
                lambda stub: stub.SubmitAnswer(
                    request, metadata=bearer(player.token), timeout=ATTEMPT_TIMEOUT_SECONDS
                ),
            )
        except grpc.aio.AioRpcError as e:
            self.log.refused(player.player_id, question, e, gave_up=e.code() in self.retry_on)
            return None
        ack = Ack.of(player.player_id, reply, attempts)
        self.log.acknowledged(ack)
        return ack

    async def call_until_answered(
        self, player: Player, call: Callable[[score_pb2_grpc.ScoreServiceStub], Awaitable[Any]]
    ) -> tuple[Any, int]:
        """A score-service call retried unchanged on UNAVAILABLE / DEADLINE_EXCEEDED
        with a short backoff; raises the last error when refused or out of time."""
        deadline = time.monotonic() + self.plan.give_up_after_seconds
        backoff = 0.05
        attempts = 0
        while True:
            attempts += 1
            try:
                return await call(self.score_stub(player)), attempts
            except grpc.aio.AioRpcError as e:
                if e.code() not in self.retry_on or time.monotonic() > deadline:
                    raise
                self.log.retry(e)
            await asyncio.sleep(backoff)
            backoff = min(2 * backoff, 0.5)


# --- the reference ranking --------------------------------------------------------------


@dataclass(frozen=True)
class Standing:
    player_id: str
    score: int
    reached_ms: int


def expected_standings(log: AnswerLog, player_ids: Iterable[str]) -> list[Standing]:
    """The ranking the log implies: higher total first; equal totals by who reached
    theirs first (the time of their last scoring answer); equal times by player id,
    descending, as a Redis sorted set and the SQL index order them."""
    standings = []
    for pid in player_ids:
        acks = log.of(pid)
        assert len({a.question for a in acks}) == len(acks)
        scoring = [a.answered_ms for a in acks if a.points > 0]
        assert scoring, f"player {pid} never scored; the plan must make everyone score"
        standings.append(Standing(pid, sum(a.points for a in acks), max(scoring)))
    standings.sort(key=lambda s: s.player_id, reverse=True)
    standings.sort(key=lambda s: (-s.score, s.reached_ms))
    return standings


def ranked(standings: list[Standing]) -> list[tuple[int, str, int]]:
    return [(rank, s.player_id, s.score) for rank, s in enumerate(standings, 1)]


def differences(
    got: list[tuple[int, str, int]], want: list[tuple[int, str, int]], what: str
) -> str:
    """A short account of how two rankings differ: wrong totals first, then order."""
    got_scores = {pid: score for _, pid, score in got}
    want_scores = {pid: score for _, pid, score in want}
    lines = [f"{what}: {len(got)} rows, expected {len(want)}"]
    missing = sorted(want_scores.keys() - got_scores.keys())
    extra = sorted(got_scores.keys() - want_scores.keys())
    if missing:
        lines.append(f"  missing players ({len(missing)}): {missing[:5]}")
    if extra:
        lines.append(f"  unknown players ({len(extra)}): {extra[:5]}")
    wrong = [
        (pid, got_scores[pid], want_scores[pid])
        for pid in sorted(got_scores.keys() & want_scores.keys())
        if got_scores[pid] != want_scores[pid]
    ]
    if wrong:
        lines.append(f"  wrong totals ({len(wrong)}), (player, got, expected): {wrong[:8]}")
    misplaced = [(g, w) for g, w in zip(got, want, strict=False) if g != w]
    if misplaced:
        lines.append(f"  rows that differ ({len(misplaced)}), (got, expected):")
        lines += [f"    {g}  vs  {w}" for g, w in misplaced[:8]]
    return "\n".join(lines)


async def assert_services_serving(stack: Stack, within: float = 10.0) -> None:
    """Every in-process service reports SERVING through grpc.health.v1 again (each
    reports NOT_SERVING while a dependency does not answer)."""
    deadline = time.monotonic() + within
    for name, channel in stack.channels.items():
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                break
            assert time.monotonic() < deadline, f"{name} not SERVING after {within:g} s"
            await asyncio.sleep(0.1)


# --- checks: Redis, through the services ------------------------------------------------


async def leaderboard_pages(
    stub: leaderboard_pb2_grpc.LeaderboardServiceStub, quiz_id: str, page_size: int = 100
) -> tuple[list[tuple[int, str, int]], int, bool]:
    """Every page of GetLeaderboard: (rank, player, score) rows, total, is_final."""
    rows: list[tuple[int, str, int]] = []
    token = ""
    while True:
        page = await stub.GetLeaderboard(
            leaderboard_pb2.GetLeaderboardRequest(
                quiz_id=quiz_id, page_size=page_size, page_token=token
            ),
            timeout=10,
        )
        rows += [(e.rank, e.player_id, e.score) for e in page.entries]
        token = page.next_page_token
        if not token:
            return rows, page.total_players, page.is_final


async def assert_live_leaderboard_matches(game: Game, expected: list[Standing]) -> None:
    """GetLeaderboard, page by page, ranks every player exactly as the log does."""
    rows, total, _ = await leaderboard_pages(game.stack.leaderboard, game.quiz_id)
    want = ranked(expected)
    assert total == len(want), f"total_players {total}, expected {len(want)}"
    assert rows == want, differences(rows, want, "live leaderboard")


async def assert_player_scores_match(game: Game) -> None:
    """GetPlayerScore gives each player the total and the answers of their log,
    each question counted once."""
    limit = asyncio.Semaphore(32)
    wrong: list[str] = []

    async def check(player: Player) -> None:
        async with limit:
            reply, _ = await game.call_until_answered(
                player,
                lambda stub: stub.GetPlayerScore(
                    score_pb2.GetPlayerScoreRequest(
                        quiz_id=game.quiz_id, player_id=player.player_id
                    ),
                    metadata=bearer(player.token),
                    timeout=ATTEMPT_TIMEOUT_SECONDS,
                ),
            )
        logged = game.log.of(player.player_id)
        answers = [
            (
                a.question_index,
                a.choice_index,
                a.correct,
                a.points_awarded,
                a.answered_at.ToMilliseconds(),
            )
            for a in reply.answers
        ]
        if reply.score != sum(a.points for a in logged) or answers != [a.result for a in logged]:
            wrong.append(
                f"{player.player_id}: score {reply.score} answers {answers}; "
                f"log says {sum(a.points for a in logged)} {[a.result for a in logged]}"
            )

    await asyncio.gather(*(check(p) for p in game.players))
    assert not wrong, f"{len(wrong)} players' scores differ from the log:\n" + "\n".join(wrong[:5])


async def assert_retries_return_originals(game: Game) -> None:
    """Sending every acknowledged answer again returns the original result, marked
    as a replay, and changes nothing."""
    limit = asyncio.Semaphore(64)
    wrong: list[str] = []
    by_id = {p.player_id: p for p in game.players}

    async def again(ack: Ack) -> None:
        player = by_id[ack.player_id]
        request = score_pb2.SubmitAnswerRequest(
            quiz_id=game.quiz_id, question_index=ack.question, choice_index=ack.choice
        )
        async with limit:
            try:
                reply, attempts = await game.call_until_answered(
                    player,
                    lambda stub: stub.SubmitAnswer(
                        request, metadata=bearer(player.token), timeout=ATTEMPT_TIMEOUT_SECONDS
                    ),
                )
            except grpc.aio.AioRpcError as e:
                wrong.append(f"{ack.player_id} q{ack.question}: {e.code().name}: {e.details()}")
                return
        replay = Ack.of(ack.player_id, reply, attempts)
        if not replay.replayed or replay.result != ack.result:
            wrong.append(
                f"{ack.player_id} q{ack.question}: replayed={replay.replayed} "
                f"{replay.result}, originally {ack.result}"
            )

    await asyncio.gather(*(again(a) for a in list(game.log.acks.values())))
    assert not wrong, f"{len(wrong)} retries did not return the original:\n" + "\n".join(wrong[:8])


def assert_running_totals_add_up(log: AnswerLog, player_ids: Iterable[str]) -> None:
    """Each first acknowledgement carried the player's total so far: the sum of their
    points up to that question, so no answer had been counted twice (or lost) by then.
    (A replay carries the total at the time of the replay instead.)"""
    wrong = []
    for pid in player_ids:
        total = 0
        for ack in log.of(pid):
            total += ack.points
            if not ack.replayed and ack.total_score != total:
                wrong.append(f"{pid} q{ack.question}: total {ack.total_score}, expected {total}")
    assert not wrong, f"{len(wrong)} acknowledgements with a wrong total: {wrong[:5]}"


async def assert_redis_matches_the_log(game: Game) -> list[Standing]:
    """All the Redis-side checks; returns the expected standings for the SQL ones."""
    assert not game.log.problems, game.log.describe_problems()
    assert len(game.log.acks) == game.plan.answers, game.log.summary()
    assert_running_totals_add_up(game.log, (p.player_id for p in game.players))
    expected = expected_standings(game.log, (p.player_id for p in game.players))
    await assert_live_leaderboard_matches(game, expected)
    await assert_player_scores_match(game)
    await assert_retries_return_originals(game)
    # The replays above must not have moved anything.
    await assert_live_leaderboard_matches(game, expected)
    return expected


async def answers_recorded(stack: Stack) -> int:
    """How many accepted-answer records the stack's JetStream stream holds."""
    nc = await nats.connect(stack.backends.nats_url)
    try:
        info = await nc.jetstream().stream_info(Subjects(stack.nats_prefix).answers_stream)
        return int(info.state.messages)
    finally:
        await nc.close()


async def assert_each_answer_recorded_once(game: Game) -> None:
    """The durable record holds every acknowledged answer once: retries and replays
    were de-duplicated by their message id."""
    recorded = await answers_recorded(game.stack)
    assert recorded == len(game.log.acks), (
        f"JetStream holds {recorded} accepted answers, the clients saw {len(game.log.acks)}"
    )


# --- checks: SQL ------------------------------------------------------------------------


async def sql_rows(database_url: str, query: str, **params: Any) -> list[Any]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(text(query), params)).all())
    finally:
        await engine.dispose()


async def sql_standings(database_url: str, quiz_id: str) -> list[Standing]:
    rows = await sql_rows(
        database_url,
        "SELECT player_id, score, reached_ms FROM scores WHERE quiz_id = :quiz "
        "ORDER BY score DESC, reached_ms ASC, player_id DESC",
        quiz=quiz_id,
    )
    return [Standing(r.player_id, int(r.score), int(r.reached_ms)) for r in rows]


async def sql_answers(database_url: str, quiz_id: str) -> dict[tuple[str, int], tuple[Any, ...]]:
    rows = await sql_rows(
        database_url,
        "SELECT player_id, question_idx, choice, correct, points, answered_ms "
        "FROM answers WHERE quiz_id = :quiz",
        quiz=quiz_id,
    )
    found: dict[tuple[str, int], tuple[Any, ...]] = {}
    for r in rows:
        key = (r.player_id, int(r.question_idx))
        assert key not in found, f"answer {key} stored twice"
        found[key] = (
            int(r.question_idx),
            int(r.choice),
            bool(r.correct),
            int(r.points),
            int(r.answered_ms),
        )
    return found


async def sql_answer_count(database_url: str, quiz_id: str) -> int:
    rows = await sql_rows(
        database_url, "SELECT COUNT(*) AS n FROM answers WHERE quiz_id = :quiz", quiz=quiz_id
    )
    return int(rows[0].n)


async def assert_sql_answers_match(database_url: str, game: Game) -> None:
    """SQL holds exactly the acknowledged answers, each once, as acknowledged."""
    answers = await sql_answers(database_url, game.quiz_id)
    logged = {key: ack.result for key, ack in game.log.acks.items()}
    missing = sorted(logged.keys() - answers.keys())
    extra = sorted(answers.keys() - logged.keys())
    changed = sorted(k for k in logged.keys() & answers.keys() if logged[k] != answers[k])
    summary = (
        f"SQL answers differ from the log: {len(missing)} missing {missing[:3]}, "
        f"{len(extra)} unknown {extra[:3]}, {len(changed)} changed "
        f"{[(k, answers[k], logged[k]) for k in changed[:3]]}"
    )
    assert not missing, summary
    assert not extra, summary
    assert not changed, summary


async def assert_sql_matches_the_log(
    database_url: str, game: Game, expected: list[Standing]
) -> None:
    """SQL holds exactly the acknowledged answers, and its scores rank the players
    exactly as the log does, down to the time each reached their total."""
    await assert_sql_answers_match(database_url, game)
    standings = await sql_standings(database_url, game.quiz_id)
    assert ranked(standings) == ranked(expected), differences(
        ranked(standings), ranked(expected), "SQL scores"
    )
    assert standings == expected, "SQL reached_ms differ: " + str(
        [(s, e) for s, e in zip(standings, expected, strict=True) if s != e][:5]
    )


async def quiz_is_final(database_url: str, quiz_id: str) -> bool:
    rows = await sql_rows(
        database_url, "SELECT board_final FROM quizzes WHERE id = :quiz", quiz=quiz_id
    )
    return bool(rows and rows[0].board_final)


# --- watchers ---------------------------------------------------------------------------


class LeaderboardWatcher:
    """A spectator's WatchLeaderboard that reconnects when its stream breaks, as a
    browser's EventSource does, and keeps the latest snapshot."""

    def __init__(self, stack: Stack, quiz_id: str) -> None:
        self.stack = stack
        self.quiz_id = quiz_id
        self.latest: common_pb2.LeaderboardSnapshot | None = None
        self.snapshots = 0
        self.breaks: list[str] = []
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            call = self.stack.stream.WatchLeaderboard(
                stream_pb2.WatchLeaderboardRequest(quiz_id=self.quiz_id)
            )
            try:
                async for reply in call:
                    if reply.HasField("snapshot"):
                        self.latest = reply.snapshot
                        self.snapshots += 1
                        self._changed.set()
                self.breaks.append("stream ended")
            except grpc.aio.AioRpcError as e:
                self.breaks.append(f"{e.code().name}: {e.details()}")
            finally:
                call.cancel()
            await asyncio.sleep(0.2)

    async def until(
        self, wanted: Callable[[common_pb2.LeaderboardSnapshot], bool], within: float
    ) -> common_pb2.LeaderboardSnapshot:
        try:
            async with asyncio.timeout(within):
                while True:
                    self._changed.clear()
                    if self.latest is not None and wanted(self.latest):
                        return self.latest
                    await self._changed.wait()
        except TimeoutError:
            latest = self.latest
            seen = (
                "nothing"
                if latest is None
                else f"version {latest.version}, final={latest.is_final}, top "
                f"{[(e.rank, e.player_id, e.score) for e in latest.entries[:3]]}"
            )
            raise AssertionError(
                f"no wanted snapshot within {within:g} s; the latest of {self.snapshots}: "
                f"{seen}; stream breaks: {self.breaks}"
            ) from None

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class QuizWatcher:
    """A WatchQuiz that resumes after the last sequence it saw when its stream
    breaks, and keeps the lifecycle events (sequence, kind, question index)."""

    def __init__(self, stack: Stack, quiz_id: str) -> None:
        self.stack = stack
        self.quiz_id = quiz_id
        self.events: list[tuple[int, str, int]] = []
        self.breaks: list[str] = []
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    @property
    def last_sequence(self) -> int:
        return self.events[-1][0] if self.events else 0

    async def _run(self) -> None:
        while True:
            call = self.stack.stream.WatchQuiz(
                stream_pb2.WatchQuizRequest(quiz_id=self.quiz_id, after_sequence=self.last_sequence)
            )
            try:
                async for reply in call:
                    self._record(reply.event)
                self.breaks.append("stream ended")
            except grpc.aio.AioRpcError as e:
                self.breaks.append(f"{e.code().name}: {e.details()}")
            finally:
                call.cancel()
            await asyncio.sleep(0.2)

    def _record(self, event: events_pb2.QuizEvent) -> None:
        kind = event.WhichOneof("kind") or ""
        if kind in ("heartbeat", "leaderboard_changed"):
            return
        index = -1
        if kind == "question_opened":
            index = event.question_opened.question.index
        elif kind == "question_closed":
            index = event.question_closed.index
        self.events.append((event.sequence, kind, index))
        self._changed.set()

    def lifecycle(self) -> list[tuple[str, int]]:
        return [(kind, index) for _, kind, index in self.events]

    async def until(self, kind: str, index: int = -1, within: float = 15.0) -> None:
        try:
            async with asyncio.timeout(within):
                while (kind, index) not in self.lifecycle():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"no {kind} event within {within:g} s; got {self.lifecycle()}, "
                f"stream breaks: {self.breaks}"
            ) from None

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def expected_lifecycle(questions: int) -> list[tuple[str, int]]:
    """The lifecycle events of a quiz played through and closed by its host."""
    events = [("quiz_started", -1)]
    for q in range(questions):
        events.append(("question_opened", q))
        events.append(("question_closed", q))
    return [*events, ("quiz_closed", -1)]


def replace_backends(backends: Backends, **changes: Any) -> Backends:
    return dataclasses.replace(backends, **changes)
