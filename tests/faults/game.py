"""The Game driver: a host running the quiz, and players answering it until acknowledged."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import grpc
from quizmesh.common.v1 import common_pb2
from quizmesh.quiz.v1 import quiz_pb2
from quizmesh.score.v1 import score_pb2, score_pb2_grpc

from tests.faults.answer_log import Ack, AnswerLog
from tests.faults.plan import Player, QuizPlan
from tests.stack import Stack, bearer

# Clients must find a restarted server within a fraction of a second, not after
# grpc-core's default reconnect backoff (1 s growing to 120 s).
CLIENT_CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
    ("grpc.enable_retries", 0),  # the clients below retry by hand, and count it
]
# What a client may retry unchanged
# (docs/spec.md#one-answer-per-question: SubmitAnswer is idempotent).
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
ATTEMPT_TIMEOUT_SECONDS = 3.0

R = TypeVar("R")


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

    def score_stub(self, player: Player) -> score_pb2_grpc.ScoreServiceAsyncStub:
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
        self, player: Player, call: Callable[[score_pb2_grpc.ScoreServiceAsyncStub], Awaitable[R]]
    ) -> tuple[R, int]:
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
