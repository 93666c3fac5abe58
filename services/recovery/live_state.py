"""Rebuilds a quiz's live Redis state exactly from SQL plus the JetStream record.

SQL holds the quiz, its questions and players (and the answers synced so far);
JetStream holds every accepted answer. Replaying them gives the same answers
hash, totals, tie-break times and counts the score script had produced. The state
hash is written last: until it exists, every service treats the quiz as missing
(the score script refuses answers with a retryable error), so no one acts on a
half-built state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass

from nats.js import JetStreamContext
from quizmesh.common.v1 import events_pb2
from redis.asyncio import Redis
from redis.typing import EncodableT
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.database.tables import answers, players
from services.live.board import Answer, QuizKeys, pack
from services.mesh.clock import now_ms
from services.mesh.config import CommonSettings
from services.mesh.connections import Connections
from services.mesh.errors import NotFound, Unavailable
from services.mesh.messaging import Subjects, replay
from services.quiz.live import question_specs, state_fields
from services.quiz.store import QuizStore

log = logging.getLogger(__name__)

RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
CHUNK = 5_000


@dataclass(frozen=True, slots=True)
class Rebuilt:
    quiz_id: str
    players: int
    answers: int


class LiveStateRecovery:
    def __init__(
        self,
        engine: AsyncEngine,
        redis: Redis,
        js: JetStreamContext,
        subjects: Subjects,
        prefix: str,
        lock_ms: int = 120_000,
        settle_seconds: float = 3.0,
    ) -> None:
        self.engine = engine
        self.store = QuizStore(engine)
        self.redis = redis
        self.js = js
        self.subjects = subjects
        self.prefix = prefix
        self.lock_ms = lock_ms
        self.settle_seconds = settle_seconds
        self._rebuilding: dict[str, asyncio.Task[None]] = {}
        self._release = redis.register_script(RELEASE_LOCK)

    @classmethod
    def of(
        cls, engine: AsyncEngine, conn: Connections, settings: CommonSettings
    ) -> LiveStateRecovery:
        """Recovery over a service's own connections and settings."""
        return cls(
            engine,
            conn.redis,
            conn.js,
            conn.subjects,
            settings.key_prefix,
            settle_seconds=settings.recovery_settle_seconds,
        )

    async def ensure_live(self, quiz_id: str) -> bool:
        """True when the quiz has live state; False when it is final in SQL and served
        from there; NotFound for an unknown quiz. A lost state is rebuilt in the
        background (not inside the request, whose deadline would cut it short)
        and the caller gets UNAVAILABLE, to retry."""
        if await self.redis.exists(QuizKeys(self.prefix, quiz_id).state):
            return True
        quiz = await self.store.get(quiz_id)  # NotFound for an unknown quiz
        if quiz.board_final:
            return False
        if quiz_id not in self._rebuilding:
            task = asyncio.create_task(self._rebuild_in_background(quiz_id))
            self._rebuilding[quiz_id] = task
            task.add_done_callback(lambda _: self._rebuilding.pop(quiz_id, None))
        raise Unavailable(f"the live state of quiz {quiz_id} is being restored; retry")

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
        keys = QuizKeys(self.prefix, quiz_id)
        token = uuid.uuid4().hex
        if not await self.redis.set(keys.recovering, token, nx=True, px=self.lock_ms):
            raise Unavailable(f"the live state of quiz {quiz_id} is being restored; retry")
        try:
            if force:
                await self.redis.delete(keys.state)  # answers now wait for the rebuild
            elif await self.redis.exists(keys.state):
                return None
            # An answer scored just before Redis was lost may still be on its way
            # to JetStream (bounded by the score service's publish timeout).
            await asyncio.sleep(self.settle_seconds)
            return await self._rebuild(quiz_id, keys)
        finally:
            await self._release(keys=[keys.recovering], args=[token])

    async def _rebuild(self, quiz_id: str, keys: QuizKeys) -> Rebuilt:
        quiz = await self.store.get(quiz_id)
        if quiz.board_final:
            raise NotFound(f"quiz {quiz_id} is final; its leaderboard is served from SQL")
        questions = await self.store.questions(quiz_id)
        async with self.engine.connect() as conn:
            joined = {
                r.id: (r.nickname, r.joined_ms)
                for r in await conn.execute(
                    select(players.c.id, players.c.nickname, players.c.joined_ms).where(
                        players.c.quiz_id == quiz_id
                    )
                )
            }
            accepted: dict[tuple[int, str], Answer] = {
                (r.question_idx, r.player_id): Answer(
                    r.question_idx, r.choice, bool(r.correct), r.points, r.answered_ms
                )
                for r in await conn.execute(select(answers).where(answers.c.quiz_id == quiz_id))
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

        totals = dict.fromkeys(joined, 0)
        reached = {pid: joined_ms for pid, (_, joined_ms) in joined.items()}
        counts: dict[int, int] = {}
        for (question, pid), answer in sorted(accepted.items(), key=lambda kv: kv[1].answered_ms):
            counts[question] = counts.get(question, 0) + 1
            if answer.points_awarded > 0 and pid in totals:
                totals[pid] += answer.points_awarded
                reached[pid] = answer.answered_ms

        await self.redis.delete(*keys.all())
        if questions:
            await self.redis.hset(keys.questions, mapping=question_specs(questions))
        items = list(joined.items())
        for i in range(0, len(items), CHUNK):
            part = items[i : i + CHUNK]
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hset(keys.nicknames, mapping={pid: nick for pid, (nick, _) in part})
                pipe.zadd(
                    keys.board,
                    {pid: pack(totals[pid], reached[pid] - quiz.created_ms) for pid, _ in part},
                )
                await pipe.execute()
        answer_items = list(accepted.items())
        for i in range(0, len(answer_items), CHUNK):
            await self.redis.hset(
                keys.answers,
                mapping={f"{q}:{pid}": a.record() for (q, pid), a in answer_items[i : i + CHUNK]},
            )
        # Last: from here on the quiz is live again. The version jumps ahead of any
        # number watchers saw before, so they take the rebuilt board as newer.
        state: dict[EncodableT, EncodableT] = {**state_fields(quiz), "version": now_ms()}
        state.update({f"answers:{q}": n for q, n in counts.items()})
        scored = [a.answered_ms for a in accepted.values() if a.points_awarded > 0]
        if scored:
            state["changed_at"] = max(scored)
        await self.redis.hset(keys.state, mapping=state)
        log.warning(
            "live state rebuilt",
            extra={"quiz_id": quiz_id, "players": len(joined), "answers": len(accepted)},
        )
        return Rebuilt(quiz_id, len(joined), len(accepted))


async def _rebuild_quietly(
    recovery: LiveStateRecovery, quiz_id: str, limit: asyncio.Semaphore
) -> None:
    async with limit:
        with contextlib.suppress(Unavailable):  # another replica is on it
            await recovery.rebuild(quiz_id)


async def restore_lost_states(
    store: QuizStore, recovery: LiveStateRecovery, every: float, parallel: int = 8
) -> None:
    """Rebuilds the live state of any active quiz Redis has lost (e.g. a restart
    without persistence), up to `parallel` at once; each replica checks, the lock
    lets one rebuild."""
    limit = asyncio.Semaphore(parallel)
    while True:
        await asyncio.sleep(every)
        try:
            ids = await store.active_ids()
            if not ids:
                continue
            async with recovery.redis.pipeline(transaction=False) as pipe:
                for quiz_id in ids:
                    pipe.exists(QuizKeys(recovery.prefix, quiz_id).state)
                found = await pipe.execute()
            lost = [quiz_id for quiz_id, present in zip(ids, found, strict=True) if not present]
            # Together, not one after another: each waits out the settle delay, and
            # a Redis that lost everything must not bring quizzes back one by one.
            results = await asyncio.gather(
                *(_rebuild_quietly(recovery, quiz_id, limit) for quiz_id in lost),
                return_exceptions=True,
            )
            for quiz_id, result in zip(lost, results, strict=True):
                if isinstance(result, Exception):
                    log.error("restore failed", extra={"quiz_id": quiz_id}, exc_info=result)
        except Exception:
            log.exception("restore check failed")
