"""ScoreService: answer intake with server-side scoring, exactly once per question."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import Counter
from quizmesh.common.v1 import events_pb2
from quizmesh.score.v1 import score_pb2, score_pb2_grpc

from services import ids
from services.identity.tokens import Role
from services.live.answers import AnswerBook, Outcome
from services.live.layout import Answer
from services.mesh import tracing
from services.mesh.clock import now_ms, timestamp
from services.mesh.context import Context
from services.mesh.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Reason,
    Unavailable,
)
from services.mesh.messaging import Subjects
from services.recovery.live_state import LiveStateRecovery
from services.score.answer_log import AnswerLog
from services.score.hints import BoardHints
from services.score.redelivery import Redelivery
from services.score.tokens import KnownTokens

log = logging.getLogger(__name__)


def _result(
    answer: Answer, revealed: bool, answered_at: Timestamp | None = None
) -> score_pb2.AnswerResult:
    """The answer as its player may see it: right or wrong and points only once revealed."""
    return score_pb2.AnswerResult(
        question_index=answer.question_index,
        choice_index=answer.choice_index,
        correct=answer.correct and revealed,
        points_awarded=answer.points_awarded if revealed else 0,
        answered_at=answered_at or timestamp(answer.answered_ms),
        revealed=revealed,
    )


def _closed(quiz_id: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"quiz {quiz_id} is closed; answers are no longer accepted",
        Reason.ERROR_REASON_QUIZ_CLOSED,
    )


def _refusal(quiz_id: str, question: int, outcome: Outcome) -> Exception:
    """A person-readable reason for each way the script can refuse an answer."""
    detail = outcome.detail
    match outcome.error:
        case "no_quiz":
            return NotFound(f"quiz {quiz_id} not found", Reason.ERROR_REASON_QUIZ_NOT_FOUND)
        case "no_player":
            return NotFound(
                f"you are not a player of quiz {quiz_id}; join it first",
                Reason.ERROR_REASON_PLAYER_NOT_FOUND,
            )
        case "not_started":
            return FailedPrecondition(
                f"quiz {quiz_id} has not started yet", Reason.ERROR_REASON_QUIZ_NOT_STARTED
            )
        case "closed":
            return _closed(quiz_id)
        case "not_open":
            return FailedPrecondition(
                f"question {question} is not open yet (the open question is {detail})",
                Reason.ERROR_REASON_QUESTION_NOT_OPEN,
            )
        case "moved_on":
            return FailedPrecondition(
                f"question {question} is closed; the open question is {detail}",
                Reason.ERROR_REASON_QUESTION_CLOSED,
            )
        case "late":
            return FailedPrecondition(
                f"too late: question {question} closed {detail} ms before your answer arrived",
                Reason.ERROR_REASON_ANSWER_TOO_LATE,
            )
        case "bad_choice":
            return InvalidArgument(
                f"choice_index must be between 0 and {int(detail) - 1}, got a larger value",
                Reason.ERROR_REASON_CHOICE_OUT_OF_RANGE,
            )
    # A refusal the script has and this does not know: a bug (INTERNAL, logged).
    return RuntimeError(f"the answer script refused with an unknown error {outcome.error!r}")


@dataclass
class ScoreService(score_pb2_grpc.ScoreServiceServicer):
    book: AnswerBook
    answer_log: AnswerLog
    redelivery: Redelivery
    subjects: Subjects
    tokens: KnownTokens
    recovery: LiveStateRecovery
    answers: Counter
    hints: BoardHints

    def __post_init__(self) -> None:
        # Children looked up once: labels() costs a lock and a dict lookup per call.
        self._accepted = self.answers.labels("accepted")
        self._replayed = self.answers.labels("replayed")

    async def SubmitAnswer(
        self, request: score_pb2.SubmitAnswerRequest, context: Context
    ) -> score_pb2.SubmitAnswerResponse:
        now = now_ms()  # the server's clock decides, never the client's
        quiz_id = ids.quiz_code(request.quiz_id)
        player = self.tokens.caller(context).require_player_of(quiz_id)
        outcome = await self.book.submit(
            quiz_id, request.question_index, player.subject, request.choice_index, now
        )
        if outcome.error == "no_quiz" and await self._restored(quiz_id):
            outcome = await self.book.submit(
                quiz_id, request.question_index, player.subject, request.choice_index, now
            )
        if outcome.answer is None:
            self.answers.labels(outcome.error).inc()
            raise _refusal(quiz_id, request.question_index, outcome)
        answer = outcome.answer
        replayed = outcome.kind == "replay"
        if not replayed:
            self.hints.changed(quiz_id)  # the board in Redis has it: snapshots may show it
        if replayed and answer.choice_index != request.choice_index:
            self.answers.labels("changed_answer").inc()
            raise AlreadyExists(
                f"you already answered question {answer.question_index} "
                f"(choice {answer.choice_index}); one answer per question",
                Reason.ERROR_REASON_ANSWER_CHANGED,
            )
        answered_at = timestamp(answer.answered_ms)  # once: its Python setter is not cheap
        # Durable before acknowledged. A replay publishes again: the first attempt
        # may have died between Redis and JetStream; the message id de-duplicates.
        await self._record(quiz_id, player.subject, answer, answered_at, outcome.running_total)
        (self._replayed if replayed else self._accepted).inc()
        return score_pb2.SubmitAnswerResponse(
            result=_result(answer, outcome.revealed, answered_at),
            total_score=outcome.total_score,
            replayed=replayed,
        )

    async def _restored(self, quiz_id: str) -> bool:
        """Whether a quiz missing from Redis came back (rebuilt from SQL and JetStream);
        a final quiz has no live state any more: it is closed."""
        if await self.recovery.ensure_live(quiz_id):
            return True
        raise _closed(quiz_id)

    async def _record(
        self, quiz_id: str, player_id: str, answer: Answer, answered_at: Timestamp, total: int
    ) -> None:
        record = events_pb2.AcceptedAnswer(
            quiz_id=quiz_id,
            question_index=answer.question_index,
            player_id=player_id,
            choice_index=answer.choice_index,
            correct=answer.correct,
            points_awarded=answer.points_awarded,
            total_score=total,
            answered_at=answered_at,
        )
        subject, payload = self.subjects.answers(quiz_id), record.SerializeToString()
        headers = {
            "Nats-Msg-Id": f"{quiz_id}:{answer.question_index}:{player_id}",
            **tracing.headers(),
        }
        try:
            await self.answer_log.record(subject, payload, headers=headers)
        except Exception as e:
            # Redis counts it already: sent again until stored, whether or not the
            # client retries (services/score/redelivery.py).
            self.redelivery.add(subject, payload, headers)
            log.warning(
                "answer not confirmed durable", extra={"quiz_id": quiz_id, "error": repr(e)}
            )
            raise Unavailable(
                "your answer was scored but not yet stored durably; retry the same request",
                Reason.ERROR_REASON_ANSWER_NOT_DURABLE,
            ) from e

    async def GetPlayerScore(
        self, request: score_pb2.GetPlayerScoreRequest, context: Context
    ) -> score_pb2.GetPlayerScoreResponse:
        quiz_id = ids.quiz_code(request.quiz_id)
        player_id = ids.player_ref(request.player_id)
        caller = self.tokens.caller(context)
        is_self = caller.role is Role.PLAYER and caller.quiz_id == quiz_id
        is_self = is_self and caller.subject == player_id
        if not is_self and not (
            caller.role is Role.HOST and caller.subject == await self.book.host_of(quiz_id)
        ):
            raise PermissionDenied(
                "only that player or the quiz's host may read this score",
                Reason.ERROR_REASON_NOT_A_PLAYER,
            )
        found = await self.book.player_answers(quiz_id, player_id, now_ms())
        if found is None:
            raise NotFound(
                f"player {player_id} is not in quiz {quiz_id}", Reason.ERROR_REASON_PLAYER_NOT_FOUND
            )
        return score_pb2.GetPlayerScoreResponse(
            player_id=player_id,
            score=found.total,
            answers=[_result(a, revealed) for a, revealed in found.answers],
        )
