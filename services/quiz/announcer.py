"""Lifecycle events on JetStream, each with a deterministic message id so that the
same fact announced by several replicas (or retried) is stored once."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from quizmesh.common.v1 import common_pb2, events_pb2

from services.mesh import tracing
from services.mesh.clock import timestamp
from services.mesh.messaging import Subjects

log = logging.getLogger(__name__)

# A JetStream publish waits this long for the stream's acknowledgement.
PUBLISH_TIMEOUT_SECONDS = 2.0


class Announcer:
    def __init__(self, nc: NatsClient, js: JetStreamContext, subjects: Subjects) -> None:
        self.nc = nc
        self.js = js
        self.subjects = subjects

    async def _publish(self, msg_id: str, event: events_pb2.QuizEvent, at: int) -> None:
        """One attempt: what is not announced now is announced by the deadline sweep,
        which finds it in the quiz row (see Lifecycle), with the same message id."""
        event.time.CopyFrom(timestamp(at))
        await self.js.publish(
            self.subjects.events(event.quiz_id),
            event.SerializeToString(),
            timeout=PUBLISH_TIMEOUT_SECONDS,
            headers={"Nats-Msg-Id": msg_id, **tracing.headers()},
        )

    async def quiz_started(self, quiz_id: str, question_count: int, at: int) -> None:
        await self._publish(
            f"{quiz_id}:started",
            events_pb2.QuizEvent(
                quiz_id=quiz_id,
                quiz_started=events_pb2.QuizStarted(question_count=question_count),
            ),
            at,
        )

    async def question_opened(
        self, quiz_id: str, question: common_pb2.QuestionView, question_count: int, at: int
    ) -> None:
        await self._publish(
            f"{quiz_id}:q{question.index}:opened",
            events_pb2.QuizEvent(
                quiz_id=quiz_id,
                question_opened=events_pb2.QuestionOpened(
                    question=question, question_count=question_count
                ),
            ),
            at,
        )

    async def question_closed(
        self, quiz_id: str, index: int, correct: int, choice_counts: Sequence[int], at: int
    ) -> None:
        await self._publish(
            f"{quiz_id}:q{index}:closed",
            events_pb2.QuizEvent(
                quiz_id=quiz_id,
                question_closed=events_pb2.QuestionClosed(
                    index=index, correct_choice=correct, choice_counts=choice_counts
                ),
            ),
            at,
        )

    async def quiz_closed(
        self, quiz_id: str, reason: events_pb2.CloseReason.ValueType, at: int
    ) -> None:
        await self._publish(
            f"{quiz_id}:closed",
            events_pb2.QuizEvent(quiz_id=quiz_id, quiz_closed=events_pb2.QuizClosed(reason=reason)),
            at,
        )

    async def board_changed(self, quiz_id: str) -> None:
        """A hint for the leaderboard service; losing one only delays a snapshot."""
        try:
            await self.nc.publish(
                self.subjects.board_changed(quiz_id), b"", headers=tracing.headers() or None
            )
        except Exception as e:
            log.warning("board hint not published", extra={"quiz_id": quiz_id, "error": repr(e)})
