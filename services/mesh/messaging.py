"""NATS subjects and JetStream streams, named once for every service."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError

from services.mesh import logs
from services.mesh.outages import reason_of

log = logging.getLogger(__name__)

# JetStream de-duplicates message ids within this window: long enough to cover
# client retries and several replicas announcing the same lifecycle fact.
DUPLICATE_WINDOW_SECONDS = 2 * 3600

# How long a drain may wait for subscriptions to finish: well within a stop's step
# (app.STOP_STEP_SECONDS), which would otherwise cancel it (see `close`).
DRAIN_SECONDS = 2

# The client PINGs the server this often and reconnects after this many PINGs go
# unanswered: a stalled connection is found in seconds, not nats-py's 4 minutes.
PING_INTERVAL_SECONDS = 2
MAX_OUTSTANDING_PINGS = 3

# What nats-py reports while its connection is lost or being made again.
CONNECTION_ERRORS = (nats.errors.StaleConnectionError, nats.errors.NoServersError, OSError)


@dataclass(frozen=True, slots=True)
class Subjects:
    """Subject and stream names under one prefix (tests use their own)."""

    prefix: str

    @property
    def events_stream(self) -> str:
        return f"{self.prefix}_EVENTS".upper().replace(".", "_").replace("-", "_")

    @property
    def answers_stream(self) -> str:
        return f"{self.prefix}_ANSWERS".upper().replace(".", "_").replace("-", "_")

    def events(self, quiz_id: str) -> str:
        """Lifecycle events of a quiz (JetStream)."""
        return f"{self.prefix}.events.{quiz_id}"

    def answers(self, quiz_id: str) -> str:
        """Accepted answers of a quiz (JetStream, the durable record)."""
        return f"{self.prefix}.answers.{quiz_id}"

    def board_changed(self, quiz_id: str) -> str:
        """A hint that a quiz's board changed (core NATS): joins, bursts of answers."""
        return f"{self.prefix}.board.{quiz_id}"

    def leaderboard(self, quiz_id: str) -> str:
        """Coalesced leaderboard snapshots of a quiz (core NATS)."""
        return f"{self.prefix}.leaderboard.{quiz_id}"

    def all(self, kind: str) -> str:
        return f"{self.prefix}.{kind}.*"

    @staticmethod
    def quiz_of(subject: str) -> str:
        return subject.rsplit(".", 1)[-1]


async def connect(url: str, name: str, reconnect: bool = True) -> NatsClient:
    """Connects; a server keeps reconnecting for ever (a NATS restart heals by
    itself), a one-shot job (`reconnect=False`) fails fast instead. A lost
    connection and its return are told to the process's outage log."""
    nc = NatsClient()
    outages = logs.outages()

    async def on_error(e: Exception) -> None:
        if isinstance(e, CONNECTION_ERRORS):
            outages.unreachable("nats", reason_of(e))
        else:
            log.warning("nats error", extra={"error": repr(e)})

    async def on_disconnected() -> None:
        # Closed, not lost: our own close or drain (a one-shot job's lost connection
        # fails its next call, which says so).
        if not nc.is_closed:
            outages.unreachable("nats", "connection lost")

    async def on_reconnected() -> None:
        outages.reachable("nats")

    await nc.connect(
        [server.strip() for server in url.split(",")],
        name=name,
        allow_reconnect=reconnect,
        max_reconnect_attempts=-1 if reconnect else 1,
        reconnect_time_wait=0.5,  # type: ignore[arg-type]  # seconds; typed int, any number works
        connect_timeout=2,
        ping_interval=PING_INTERVAL_SECONDS,
        max_outstanding_pings=MAX_OUTSTANDING_PINGS,
        drain_timeout=DRAIN_SECONDS,
        error_cb=on_error,
        disconnected_cb=on_disconnected,
        reconnected_cb=on_reconnected,
    )
    return nc


async def close(nc: NatsClient) -> None:
    """Drains (what was received is handled, what was published is sent), then closes
    whatever happened: a NATS that is away at the stop cannot be drained.

    Never cancel `nc.drain()` from outside: nats-py then leaves the future gathering
    its subscriptions unretrieved, logged as "_GatheringFuture exception was never
    retrieved". Its own drain_timeout (set in `connect`) ends it instead."""
    try:
        await nc.drain()
    except nats.errors.Error:
        pass  # reconnecting or closed: the outage log has said why
    finally:
        if not nc.is_closed:
            await nc.close()


async def ensure_streams(js: JetStreamContext, subjects: Subjects, replicas: int = 1) -> None:
    """Creates (or updates) our two streams, each kept in `replicas` copies; safe for
    many replicas at once. A changed copy count is applied to existing streams (NATS
    moves their data)."""
    for name, subject in (
        (subjects.events_stream, subjects.all("events")),
        (subjects.answers_stream, subjects.all("answers")),
    ):
        config = StreamConfig(
            name=name,
            subjects=[subject],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            duplicate_window=DUPLICATE_WINDOW_SECONDS,
            num_replicas=replicas,
        )
        try:
            await js.add_stream(config)
        except BadRequestError:
            await js.update_stream(config)


def connected(nc: NatsClient) -> Callable[[], Awaitable[None]]:
    """A health check: NATS counts as up only while the connection is, which the
    client's own PINGs keep honest (see PING_INTERVAL_SECONDS). No flush of our own:
    nats-py gives up on a flush's PONG when it times out, and that PONG arriving
    later kills the client's read loop (InvalidStateError: connected, reading
    nothing)."""

    async def check() -> None:
        if not nc.is_connected:
            raise ConnectionError("not connected to NATS")

    return check


async def replay(
    js: JetStreamContext, stream: str, subject: str, after_seq: int = 0, wait: float = 5.0
) -> AsyncGenerator[Msg, None]:
    """The messages on `subject` stored after `after_seq`, up to the last one stored
    when called, in stream order (an ordered consumer: no state left behind)."""
    if "*" in subject or ">" in subject:
        info = await js.stream_info(stream)
        last = info.state.last_seq
    else:
        try:
            last = (await js.get_last_msg(stream, subject)).seq or 0
        except NotFoundError:
            return
    if last <= after_seq:
        return
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after_seq + 1
    )
    sub = await js.subscribe(subject, stream=stream, ordered_consumer=True, config=config)
    try:
        while True:
            msg = await sub.next_msg(timeout=wait)
            yield msg
            if msg.metadata.sequence.stream >= last or msg.metadata.num_pending == 0:
                return
    finally:
        await sub.unsubscribe()
