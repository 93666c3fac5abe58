"""Answers Redis counted but JetStream did not confirm, published again in the
background until it stores them.

The answer script applies an answer to the live board before its record reaches
JetStream (judging needs the board's state, atomically). When the record is not
confirmed the caller gets UNAVAILABLE and may retry; if it never does (a closed
tab, a dead phone), this keeps the board honest: the record is sent again (same
Nats-Msg-Id, so one that was stored after all is not stored twice) until JetStream
has it, so that the board runs ahead of the durable answers only while JetStream
is away. The system of record never runs ahead: the sync job sums durable answers.

What this process holds is lost if it dies during the outage; such an answer stays
on the live board until the quiz's board turns final (from SQL) or Redis is rebuilt
(from SQL and JetStream), both without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from services.score.answer_log import AnswerLog

log = logging.getLogger(__name__)

FIRST_PAUSE_SECONDS = 0.5
MAX_PAUSE_SECONDS = 5.0
# Records held at most (a few MB); beyond it the oldest are dropped, logged.
MAX_HELD = 200_000
# Records sent again at once, per pass.
PER_PASS = 5_000


@dataclass
class Redelivery:
    answer_log: AnswerLog
    limit: int = MAX_HELD
    # Nats-Msg-Id -> (subject, record, headers); a record's id is its answer's.
    _held: dict[str, tuple[str, bytes, dict[str, str]]] = field(default_factory=dict)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    @property
    def held(self) -> int:
        return len(self._held)

    def add(self, subject: str, record: bytes, headers: dict[str, str]) -> None:
        msg_id = headers["Nats-Msg-Id"]
        self._held.pop(msg_id, None)
        self._held[msg_id] = (subject, record, headers)
        while len(self._held) > self.limit:
            dropped = next(iter(self._held))
            del self._held[dropped]
            log.error("answer record dropped: too many held", extra={"msg_id": dropped})
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="answer redelivery")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._held:
            log.error("answer records not redelivered at stop", extra={"held": len(self._held)})

    async def _run(self) -> None:
        pause = FIRST_PAUSE_SECONDS
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._held:
                if await self._send_held():
                    pause = FIRST_PAUSE_SECONDS
                else:
                    await asyncio.sleep(pause)
                    pause = min(2 * pause, MAX_PAUSE_SECONDS)

    async def _send_held(self) -> bool:
        """One pass over what is held; True when all of it was stored."""
        results = await asyncio.gather(
            *(self._send(msg_id, *held) for msg_id, held in list(self._held.items())[:PER_PASS])
        )
        stored = sum(results)
        if stored:
            log.info("answer records stored on a later attempt", extra={"stored": stored})
        return not self._held

    async def _send(
        self, msg_id: str, subject: str, record: bytes, headers: dict[str, str]
    ) -> bool:
        try:
            await self.answer_log.record(subject, record, headers)
        except Exception:
            return False
        if self._held.get(msg_id, (None, None, None))[1] == record:
            del self._held[msg_id]
        return True
