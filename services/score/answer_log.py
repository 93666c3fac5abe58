"""The durable record of accepted answers: JetStream publishes, each confirmed.

What `JetStreamContext.publish` does per message, minus the per-message costs that
showed in the score service's profile under load (benchmarks/notes-intake.md):

- a counter instead of a random reply token (an os.urandom call), acks matched by
  token on one wildcard subscription, and no PubAck dataclass built from JSON;
- one timer sweeping out overdue records instead of a wait_for timer per record;
- group commit: while records are unacknowledged, new ones are held (at most
  `max_hold` seconds) and published together, in one write, when those acks are
  in. grpc.aio starts one call per loop turn, so without holding every answer
  would pay a write to NATS (and a wakeup of nats-server) of its own;
- pacing: writes at most once per `min_gap` seconds, so under load a write
  carries the answers of that interval: what a record costs nats-server falls
  from ~72 µs alone to ~22 µs with 8 in a write (benchmarks/answer_cost.py).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from services.mesh.pacing import Pacing

# JetStream answers "no responders" (no stream takes the subject) with this status.
_NO_RESPONDERS = "503"


class AckError(Exception):
    """JetStream refused to store a record (its error, as JetStream said it)."""


@dataclass(slots=True, eq=False)
class _Record:
    subject: str
    payload: bytes
    reply: str
    headers: dict[str, str]
    deadline: float
    future: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    published: bool = False


class AnswerLog:
    def __init__(
        self,
        nc: NatsClient,
        timeout: float,
        max_hold: float = 0.002,
        observe_batch: Callable[[float], None] | None = None,
        min_gap: float = 0.0,
    ) -> None:
        self.nc = nc
        self.timeout = timeout
        self.max_hold = max_hold
        self._pacing = Pacing(min_gap)
        self.observe_batch = observe_batch
        self._inbox = ""
        self._subscription: Subscription | None = None
        self._tokens = itertools.count()
        # token -> record until acked or overdue; insertion order is deadline order.
        self._waiting: dict[str, _Record] = {}
        self._held: list[_Record] = []
        self._in_flight = 0  # published, neither acked nor overdue
        self._release: asyncio.Handle | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._publishing: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._inbox = self.nc.new_inbox()
        self._subscription = await self.nc.subscribe(f"{self._inbox}.*", cb=self._on_ack)

    async def record(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        """Returns once JetStream confirmed it stored the record (a duplicate of a
        stored one counts); raises otherwise. A caller that goes away does not
        withdraw its record."""
        if self._subscription is None:
            raise RuntimeError("AnswerLog.start() was not called")
        token = str(next(self._tokens))
        record = _Record(
            subject, payload, f"{self._inbox}.{token}", headers, time.monotonic() + self.timeout
        )
        self._waiting[token] = record
        self._held.append(record)
        loop = asyncio.get_running_loop()
        if self._release is None:
            if self._in_flight == 0 or self.max_hold <= 0:
                self._release = self._pacing.schedule(loop, self._publish_held)
            else:
                self._release = loop.call_later(self.max_hold, self._publish_held)
        if self._sweeper is None:
            self._sweeper = loop.call_later(self.timeout / 4, self._sweep)
        await record.future

    def _publish_held(self) -> None:
        self._release = None
        self._pacing.wrote()
        batch, self._held = self._held, []
        for record in batch:
            record.published = True
        self._in_flight += len(batch)
        if self.observe_batch is not None:
            self.observe_batch(len(batch))
        task = asyncio.get_running_loop().create_task(self._publish(batch))
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)

    async def _publish(self, batch: list[_Record]) -> None:
        # nats-py queues each publish and writes them all on its flusher's next turn.
        for record in batch:
            try:
                await self.nc.publish(
                    record.subject, record.payload, reply=record.reply, headers=record.headers
                )
            except Exception as e:  # closed, draining, buffer full while reconnecting
                self._settle(record.reply[len(self._inbox) + 1 :], e)

    async def _on_ack(self, msg: Msg) -> None:
        error: Exception | None = None
        if msg.headers and msg.headers.get("Status") == _NO_RESPONDERS:
            error = nats.errors.NoRespondersError()
        elif b'"error"' in msg.data:
            error = AckError(f"JetStream refused the record: {json.loads(msg.data).get('error')}")
        self._settle(msg.subject[len(self._inbox) + 1 :], error)

    def _settle(self, token: str, error: Exception | None) -> None:
        record = self._waiting.pop(token, None)
        if record is None:
            return  # overdue and failed already
        if record.published:
            self._in_flight -= 1
        if not record.future.done():
            if error is None:
                record.future.set_result(None)
            else:
                record.future.set_exception(error)
        if self._in_flight == 0 and self._release is not None and self._held:
            # Every record on the wire is settled: the held ones go now (or once
            # min_gap has passed since the last write).
            self._release.cancel()
            self._release = self._pacing.schedule(asyncio.get_running_loop(), self._publish_held)

    def _sweep(self) -> None:
        """Fails the records whose ack is overdue (the oldest come first)."""
        self._sweeper = None
        now = time.monotonic()
        overdue = []
        for token, record in self._waiting.items():
            if record.deadline > now:
                break
            overdue.append(token)
        for token in overdue:
            self._settle(token, nats.errors.TimeoutError())
        if self._waiting:
            self._sweeper = asyncio.get_running_loop().call_later(self.timeout / 4, self._sweep)

    async def stop(self) -> None:
        if self._release is not None:
            self._release.cancel()
            self._publish_held()
        if self._publishing:
            await asyncio.gather(*self._publishing, return_exceptions=True)
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._subscription is not None:
            subscription, self._subscription = self._subscription, None
            await subscription.unsubscribe()
