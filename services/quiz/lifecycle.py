"""Quiz lifecycle: OPEN -> RUNNING (questions one at a time) -> CLOSED.

Every transition is a compare-and-set on the quiz row, with the matching Redis
write inside the same SQL transaction (so a failed Redis write rolls it back),
followed by its announcement on JetStream. A host's transition marks the row
until it has been announced; should its replica die or NATS fail in between, the
sweep announces it from the row. A question's close is a fact derived from its
stored deadline: every replica sweeps for passed deadlines and announces them.
Message ids are deterministic, so an announcement made twice is stored once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, cast

from prometheus_client import Gauge
from quizmesh.common.v1 import common_pb2, events_pb2
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.database.records import Question, QuizRecord, QuizRecords, QuizState
from services.live.quizzes import LiveQuizzes
from services.mesh.clock import now_ms, timestamp
from services.mesh.errors import FailedPrecondition, Reason, Unavailable
from services.quiz.announcer import Announcer
from services.quiz.store import QuizStore

log = logging.getLogger(__name__)

# How long a host's request has to announce its own transition before the sweep
# does (its publish retries take about as long).
ANNOUNCE_GRACE_MS = 3_000


def question_view(
    q: Question, opened: int | None, deadline: int | None, reveal: bool
) -> common_pb2.QuestionView:
    view = common_pb2.QuestionView(
        index=q.index,
        text=q.text,
        choices=q.choices,
        points=q.points,
        time_limit_ms=q.time_limit_ms,
    )
    if opened is not None:
        view.opened_at.CopyFrom(timestamp(opened))
    if deadline is not None:
        view.deadline.CopyFrom(timestamp(deadline))
    if reveal:
        view.correct_choice = q.correct_choice
    return view


class QuestionCache:
    """Questions never change once a quiz exists, so each replica keeps recent ones."""

    def __init__(self, records: QuizRecords, size: int = 1024) -> None:
        self._records = records
        self._size = size
        self._cache: OrderedDict[str, list[Question]] = OrderedDict()

    async def get(self, quiz_id: str) -> list[Question]:
        found = self._cache.get(quiz_id)
        if found is None:
            found = await self._records.questions(quiz_id)
            self._cache[quiz_id] = found
            if len(self._cache) > self._size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(quiz_id)
        return found


@dataclass
class Lifecycle:
    store: QuizStore
    live: LiveQuizzes
    announcer: Announcer
    questions: QuestionCache

    @property
    def engine(self) -> AsyncEngine:
        return self.store.engine

    async def start(self, quiz: QuizRecord) -> None:
        if quiz.state is not QuizState.OPEN:
            raise FailedPrecondition(
                f"quiz {quiz.id} has already been started (it is {quiz.state})",
                Reason.ERROR_REASON_QUIZ_ALREADY_STARTED,
            )
        qs = await self.questions.get(quiz.id)
        now = now_ms()
        deadline = now + qs[0].time_limit_ms
        changes: dict[str, Any] = {
            "state": QuizState.RUNNING,
            "current_question": 0,
            "question_opened_ms": now,
            "question_deadline_ms": deadline,
            "started_ms": now,
            "unannounced_ms": now,
        }
        async with self.engine.begin() as conn:
            won = await self.store.transition(conn, quiz.id, {"state": QuizState.OPEN}, **changes)
            if not won:
                raise FailedPrecondition(
                    f"quiz {quiz.id} has already been started",
                    Reason.ERROR_REASON_QUIZ_ALREADY_STARTED,
                )
            await self.store.question_opened(conn, quiz.id, 0, now)
            await self.live.open_question(quiz.id, 0, now, deadline)
        await self._announce_committed(replace(quiz, **changes))

    async def advance(self, quiz: QuizRecord) -> None:
        if quiz.state is not QuizState.RUNNING:
            if quiz.state is QuizState.OPEN:
                raise FailedPrecondition(
                    f"quiz {quiz.id} is not running: start it first",
                    Reason.ERROR_REASON_QUIZ_NOT_STARTED,
                )
            raise FailedPrecondition(
                f"quiz {quiz.id} is not running: it is closed", Reason.ERROR_REASON_QUIZ_CLOSED
            )
        qs = await self.questions.get(quiz.id)
        current = quiz.current_question
        now = now_ms()
        if not quiz.question_closed(current, now):
            # Before its deadline: this step ends the question and reveals it on
            # every screen; the next one moves on (or finishes after the last).
            await self._end_question(quiz, now)
            return
        if current + 1 >= len(qs):
            await self.close(quiz, events_pb2.CLOSE_REASON_HOST)
            return
        await self._previous_announced(quiz)
        nxt = qs[current + 1]
        deadline = now + nxt.time_limit_ms
        changes: dict[str, Any] = {
            "current_question": current + 1,
            "question_opened_ms": now,
            "question_deadline_ms": deadline,
            "closed_question": current,
            "unannounced_ms": now,
        }
        async with self.engine.begin() as conn:
            expect = {"state": QuizState.RUNNING, "current_question": current}
            await self._host_step(conn, quiz.id, expect, changes)
            await self.store.question_opened(conn, quiz.id, nxt.index, now)
            await self.live.open_question(quiz.id, nxt.index, now, deadline)
        await self._announce_committed(replace(quiz, **changes))

    async def _host_step(
        self,
        conn: AsyncConnection,
        quiz_id: str,
        expect: Mapping[str, object],
        changes: dict[str, Any],
    ) -> None:
        """The host's transition, if the quiz is still as the host saw it."""
        if not await self.store.transition(conn, quiz_id, expect, **changes):
            raise FailedPrecondition(
                f"quiz {quiz_id} changed meanwhile; look again and retry",
                Reason.ERROR_REASON_QUIZ_CHANGED,
            )

    async def _end_question(self, quiz: QuizRecord, now: int) -> None:
        """The open question closes now, as if its deadline had come: answers after
        it are too late, and its reveal (the correct choice) is announced."""
        await self._previous_announced(quiz)
        current = quiz.current_question
        changes: dict[str, Any] = {
            "question_deadline_ms": now,
            "closed_question": current,
            "unannounced_ms": now,
        }
        async with self.engine.begin() as conn:
            expect = {
                "state": QuizState.RUNNING,
                "current_question": current,
                "closed_question": quiz.closed_question,
            }
            await self._host_step(conn, quiz.id, expect, changes)
            await self.live.end_question(quiz.id, now)
        await self._announce_committed(replace(quiz, **changes))

    async def close(self, quiz: QuizRecord, reason: events_pb2.CloseReason.ValueType) -> None:
        if quiz.state is QuizState.CLOSED:
            raise FailedPrecondition(
                f"quiz {quiz.id} is already closed", Reason.ERROR_REASON_QUIZ_CLOSED
            )
        await self._previous_announced(quiz)
        now = now_ms()
        changes: dict[str, Any] = {
            "state": QuizState.CLOSED,
            "closed_ms": now,
            "close_reason": int(reason),
            "closed_question": quiz.current_question,
            "unannounced_ms": now,
        }
        async with self.engine.begin() as conn:
            expect = {"state": quiz.state, "current_question": quiz.current_question}
            await self._host_step(conn, quiz.id, expect, changes)
            await self.live.close(quiz.id, now)
        await self._announce_committed(replace(quiz, **changes))

    async def _previous_announced(self, quiz: QuizRecord) -> None:
        """At most one transition of a quiz awaits its announcement: the next waits
        for it, so that watchers see every step, in order."""
        if quiz.unannounced_ms is None:
            return
        try:
            await self._announce(quiz)
        except Exception as e:
            raise Unavailable(
                f"the previous step of quiz {quiz.id} has not reached its watchers yet; "
                "retry in a moment",
                Reason.ERROR_REASON_LIVE_UPDATES_UNAVAILABLE,
            ) from e

    async def _announce_committed(self, quiz: QuizRecord) -> None:
        """The host's transition is committed whatever happens here: if it cannot be
        announced now, the sweep announces it (the host is not told to retry)."""
        try:
            await self._announce(quiz)
        except Exception as e:
            log.warning(
                "transition not announced yet; the sweep will",
                extra={"quiz_id": quiz.id, "error": repr(e)},
            )

    async def _announce_closed(self, quiz: QuizRecord, question: Question, at: int) -> None:
        """A question's reveal, with how many chose each choice. Answers stop at the
        deadline, so the counts are final; a repeated announcement keeps its first
        copy's (the same message id)."""
        counts = await self.live.choice_counts(quiz.id, question.index, len(question.choices))
        await self.announcer.question_closed(
            quiz.id, question.index, question.correct_choice, counts, at
        )

    async def _announce(self, quiz: QuizRecord) -> None:
        """Announces what the quiz's last host transition did, as its row says, then
        clears the row's mark."""
        qs = await self.questions.get(quiz.id)
        current = quiz.current_question
        if quiz.state is QuizState.RUNNING and quiz.closed_question == current:
            # The host ended the open question early: its reveal.
            at = quiz.question_deadline_ms or now_ms()
            await self._announce_closed(quiz, qs[current], at)
        elif quiz.state is QuizState.RUNNING:
            opened = quiz.question_opened_ms or 0
            if current == 0:
                await self.announcer.quiz_started(quiz.id, len(qs), quiz.started_ms or opened)
            else:
                await self._announce_closed(quiz, qs[current - 1], opened)
            view = question_view(qs[current], opened, quiz.question_deadline_ms, reveal=False)
            await self.announcer.question_opened(quiz.id, view, len(qs), opened)
        elif quiz.state is QuizState.CLOSED:
            at = quiz.closed_ms or now_ms()
            if current >= 0:
                await self._announce_closed(quiz, qs[current], at)
            reason = cast(events_pb2.CloseReason.ValueType, quiz.close_reason)
            await self.announcer.quiz_closed(quiz.id, reason, at)
        if quiz.unannounced_ms is not None:
            await self.store.mark_announced(quiz.id, quiz.unannounced_ms)

    async def announce_pending(self) -> int:
        """Announces the host transitions that their own request did not (a replica
        that died, NATS that failed) within ANNOUNCE_GRACE_MS; how many still are not."""
        pending = await self.store.unannounced(now_ms() - ANNOUNCE_GRACE_MS)
        failed = 0
        for quiz in pending:
            try:
                await self._announce(quiz)
            except Exception:
                failed += 1
                log.exception("announcement failed", extra={"quiz_id": quiz.id})
        return failed

    async def close_due_questions(self) -> int:
        """Announces every question whose deadline passed; closes finished quizzes."""
        due = await self.store.due_questions(now_ms())
        for quiz in due:
            try:
                await self._close_due(quiz)
            except Exception:
                log.exception("deadline close failed", extra={"quiz_id": quiz.id})
        return len(due)

    async def _close_due(self, quiz: QuizRecord) -> None:
        qs = await self.questions.get(quiz.id)
        index = quiz.current_question
        deadline = quiz.question_deadline_ms or now_ms()
        # The board moves with the reveal, before watchers hear of it; should Redis
        # fail here, the row stays unmarked and the next sweep tries again.
        await self.live.reveal(quiz.id, deadline)
        # Announce first: if this replica dies before marking the row, the next
        # sweep (here or elsewhere) repeats the same message id, stored once.
        await self._announce_closed(quiz, qs[index], deadline)
        if index + 1 < len(qs):
            async with self.engine.begin() as conn:
                await self.store.transition(
                    conn, quiz.id, {"current_question": index}, closed_question=index
                )
            return
        # The quiz's close is marked unannounced like a host's step, so that should
        # its announcement fail now, the sweep announces it from the row.
        changes: dict[str, Any] = {
            "state": QuizState.CLOSED,
            "closed_ms": deadline,
            "close_reason": int(events_pb2.CLOSE_REASON_LAST_QUESTION),
            "closed_question": index,
            "unannounced_ms": now_ms(),
        }
        async with self.engine.begin() as conn:
            won = await self.store.transition(
                conn, quiz.id, {"state": QuizState.RUNNING, "current_question": index}, **changes
            )
            if won:
                await self.live.close(quiz.id, deadline)
        if won:
            await self._announce_committed(replace(quiz, **changes))

    async def sweep_deadlines(self, interval: float, unannounced: Gauge) -> None:
        """Every `interval`: pending announcements (their count left in `unannounced`),
        then passed deadlines."""
        while True:
            try:
                unannounced.set(await self.announce_pending())
                await self.close_due_questions()
            except Exception:
                log.exception("deadline sweep failed")
            await asyncio.sleep(interval)
