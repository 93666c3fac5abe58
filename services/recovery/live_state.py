"""Rebuilds a quiz's live Redis state exactly from SQL plus the JetStream record.

SQL holds the quiz, its questions and players (and the answers synced so far);
JetStream holds every accepted answer. Replaying them gives the same answers
hash, totals, tie-break times and counts the answer script had produced. The state
hash is written last (services/live/quizzes.py): until it exists, every service
treats the quiz as missing (the answer script refuses answers with a retryable
error), so no one acts on a half-built state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass, field

from nats.js import JetStreamContext
from quizmesh.common.v1 import events_pb2

from services.database.records import QuizRecords
from services.live.errors import restoring
from services.live.layout import Answer, answer_field
from services.live.quizzes import LiveQuizzes, RebuiltState
from services.mesh.clock import now_ms
from services.mesh.config import CommonSettings
from services.mesh.connections import Connections
from services.mesh.errors import NotFound, Reason, Unavailable
from services.mesh.messaging import Subjects, replay

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Rebuilt:
    quiz_id: str
    players: int
    answers: int


@dataclass
class LiveStateRecovery:
    records: QuizRecords
    live: LiveQuizzes
    js: JetStreamContext
    subjects: Subjects
    lock_ms: int = 120_000
    settle_seconds: float = 3.0
    _rebuilding: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        records: QuizRecords,
        live: LiveQuizzes,
        conn: Connections,
        settings: CommonSettings,
    ) -> LiveStateRecovery:
        """Recovery over a service's own stores, connections and settings."""
        return cls(
            records, live, conn.js, conn.subjects, settle_seconds=settings.recovery_settle_seconds
        )

    async def ensure_live(self, quiz_id: str) -> bool:
        """True when the quiz has live state; False when it is final in SQL and served
        from there; NotFound for an unknown quiz. A lost state is rebuilt in the
        background (not inside the request, whose deadline would cut it short)
        and the caller gets UNAVAILABLE, to retry."""
        if await self.live.exists(quiz_id):
            return True
        quiz = await self.records.get(quiz_id)  # NotFound for an unknown quiz
        if quiz.board_final:
            return False
        if quiz_id not in self._rebuilding:
            task = asyncio.create_task(self._rebuild_in_background(quiz_id))
            self._rebuilding[quiz_id] = task
            task.add_done_callback(lambda _: self._rebuilding.pop(quiz_id, None))
        raise restoring(quiz_id)

    async def _rebuild_in_background(self, quiz_id: str) -> None:
        try:
            await self.rebuild(quiz_id)
        except Unavailable:
            pass  # another process holds the lock and rebuilds it
        except Exception:
            log.exception("rebuild failed", extra={"quiz_id": quiz_id})

    async def rebuild(self, quiz_id: str, force: bool = False) -> Rebuilt | None:
        """Rebuilds a missing live state (None if another process already did);
        `force` first takes the quiz offline, then rebuilds it from the record."""
        token = uuid.uuid4().hex
        if not await self.live.lock_rebuild(quiz_id, token, self.lock_ms):
            raise restoring(quiz_id)
        try:
            if force:
                await self.live.take_offline(quiz_id)  # answers now wait for the rebuild
            elif await self.live.exists(quiz_id):
                return None
            # An answer scored just before Redis was lost may still be on its way
            # to JetStream (bounded by the score service's publish timeout).
            await asyncio.sleep(self.settle_seconds)
            return await self._rebuild(quiz_id)
        finally:
            await self.live.unlock_rebuild(quiz_id, token)

    async def _rebuild(self, quiz_id: str) -> Rebuilt:
        quiz = await self.records.get(quiz_id)
        if quiz.board_final:
            raise NotFound(
                f"quiz {quiz_id} is final; its leaderboard is served from SQL",
                Reason.ERROR_REASON_QUIZ_OVER,
            )
        questions = await self.records.questions(quiz_id)
        joined = await self.records.players(quiz_id)
        accepted: dict[tuple[int, str], Answer] = {
            (r.question_index, r.player_id): Answer(
                r.question_index, r.choice_index, r.correct, r.points_awarded, r.answered_ms
            )
            for r in await self.records.answers(quiz_id)
        }
        # The durable record holds everything acknowledged, synced or not.
        records = replay(self.js, self.subjects.answers_stream, self.subjects.answers(quiz_id))
        async with contextlib.aclosing(records):
            async for msg in records:
                a = events_pb2.AcceptedAnswer.FromString(msg.data)
                accepted.setdefault(
                    (a.question_index, a.player_id),
                    Answer(
                        a.question_index,
                        a.choice_index,
                        a.correct,
                        a.points_awarded,
                        a.answered_at.ToMilliseconds(),
                    ),
                )

        totals = {p.id: 0 for p in joined}
        reached = {p.id: p.joined_ms for p in joined}
        counts: dict[int, int] = {}
        choices: dict[tuple[int, int], int] = {}
        # The open question's results stay pending, as the answer script left them.
        current = quiz.current_question
        withheld = not quiz.instant_feedback and not quiz.question_closed(current, now_ms())
        pending: dict[str, tuple[int, int]] = {}
        for (question, pid), answer in sorted(accepted.items(), key=lambda kv: kv[1].answered_ms):
            counts[question] = counts.get(question, 0) + 1
            chose = (question, answer.choice_index)
            choices[chose] = choices.get(chose, 0) + 1
            if answer.points_awarded <= 0 or pid not in totals:
                continue
            if withheld and question == current:
                since = answer.answered_ms - quiz.created_ms
                pending[pid] = (totals[pid] + answer.points_awarded, since)
            else:
                totals[pid] += answer.points_awarded
                reached[pid] = answer.answered_ms
        # When the board last moved: the last revealed answer's time (without instant
        # feedback the reveal came later; no record keeps when).
        scored = [
            a.answered_ms
            for (question, _), a in accepted.items()
            if a.points_awarded > 0 and not (withheld and question == current)
        ]
        await self.live.write_rebuilt(
            RebuiltState(
                quiz=quiz,
                questions=questions,
                nicknames={p.id: p.nickname for p in joined},
                scores={pid: (totals[pid], reached[pid] - quiz.created_ms) for pid in totals},
                answers={answer_field(q, pid): a.record() for (q, pid), a in accepted.items()},
                answer_counts=counts,
                choice_counts=choices,
                pending=pending,
                changed_at=max(scored) if scored else None,
            )
        )
        log.warning(
            "live state rebuilt",
            extra={"quiz_id": quiz_id, "players": len(joined), "answers": len(accepted)},
        )
        return Rebuilt(quiz_id, len(joined), len(accepted))

    async def restore_lost(self, every: float, parallel: int = 8) -> None:
        """Rebuilds the live state of any active quiz Redis has lost (e.g. a restart
        without persistence), up to `parallel` at once, checking every `every`
        seconds until cancelled; each replica checks, the lock lets one rebuild."""
        limit = asyncio.Semaphore(parallel)

        async def quietly(quiz_id: str) -> None:
            async with limit:
                with contextlib.suppress(Unavailable):  # another replica is on it
                    await self.rebuild(quiz_id)

        while True:
            await asyncio.sleep(every)
            try:
                ids = await self.records.active_ids()
                if not ids:
                    continue
                found = await self.live.which_exist(ids)
                lost = [quiz_id for quiz_id, present in zip(ids, found, strict=True) if not present]
                # Together, not one after another: each waits out the settle delay,
                # and a Redis that lost everything must not bring quizzes back one
                # by one.
                results = await asyncio.gather(
                    *(quietly(quiz_id) for quiz_id in lost), return_exceptions=True
                )
                for quiz_id, result in zip(lost, results, strict=True):
                    if isinstance(result, Exception):
                        log.error("restore failed", extra={"quiz_id": quiz_id}, exc_info=result)
            except Exception:
                log.exception("restore check failed")
