"""A host's transition is committed before it is announced on JetStream; one whose
announcement fails (its replica died, NATS failed) still reaches every watcher, once
and in order, and no later step overtakes it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import grpc
import nats
import pytest
from quizmesh.common.v1 import events_pb2

from services.mesh.messaging import Subjects, replay
from services.quiz.announcer import Announcer
from tests.api import ApiError, GrpcApi
from tests.game import REFERENCE_QUIZ
from tests.stack import Stack


class Outage:
    """Makes every announcement of one quiz fail while on, as if NATS were gone."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, quiz_id: str) -> None:
        self.on = True
        publish = Announcer._publish

        async def failing(
            announcer: Announcer, msg_id: str, event: events_pb2.QuizEvent, at: int
        ) -> None:
            if self.on and event.quiz_id == quiz_id:
                raise RuntimeError("NATS is unreachable (injected)")
            await publish(announcer, msg_id, event, at)

        monkeypatch.setattr(Announcer, "_publish", failing)


def described(events: list[events_pb2.QuizEvent]) -> Iterator[str]:
    for event in events:
        kind = event.WhichOneof("kind")
        match kind:
            case "question_opened":
                yield f"opened {event.question_opened.question.index}"
            case "question_closed":
                yield f"closed {event.question_closed.index}"
            case _:
                yield str(kind)


async def announced(stack: Stack, quiz_id: str) -> list[str]:
    subjects = Subjects(stack.nats_prefix)
    nc = await nats.connect(stack.backends.nats_url)
    try:
        js = nc.jetstream()
        stored = [
            events_pb2.QuizEvent.FromString(msg.data)
            async for msg in replay(js, subjects.events_stream, subjects.events(quiz_id))
        ]
    finally:
        await nc.close()
    return list(described(stored))


async def announced_within(
    stack: Stack, quiz_id: str, count: int, seconds: float = 15.0
) -> list[str]:
    """The quiz's events once there are `count` of them (the sweep's grace is 3 s)."""
    for _ in range(int(seconds / 0.2)):
        found = await announced(stack, quiz_id)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.2)
    return await announced(stack, quiz_id)


async def unannounced_steps_within(stack: Stack, expected: int, seconds: float = 15.0) -> int:
    """The quiz service's quizmesh_unannounced_steps once it is `expected` (or at the end)."""
    registry = stack.apps["quiz"].metrics.registry
    value = None
    for _ in range(int(seconds / 0.2)):
        value = registry.get_sample_value("quizmesh_unannounced_steps")
        if value == expected:
            break
        await asyncio.sleep(0.2)
    return int(value or 0)


async def hosted_quiz(stack: Stack) -> tuple[GrpcApi, str, str]:
    """An API client, a host's token and the id of the host's new quiz."""
    host = stack.host_token("alice")
    api = GrpcApi(stack.channels)
    quiz_id = (await api.call("CreateQuiz", REFERENCE_QUIZ, host))["quiz"]["quiz_id"]
    return api, host, quiz_id


async def test_a_start_that_could_not_be_announced_reaches_watchers_later_and_once(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, host, quiz_id = await hosted_quiz(stack)
    outage = Outage(monkeypatch, quiz_id)

    started = await api.call("StartQuiz", {"quiz_id": quiz_id}, host)
    with pytest.raises(ApiError) as refused:
        await api.call("AdvanceQuestion", {"quiz_id": quiz_id}, host)
    unannounced = await announced(stack, quiz_id)
    alarm = await unannounced_steps_within(stack, 1)  # past the grace, still failing
    outage.on = False
    later = await announced_within(stack, quiz_id, count=2)
    alarm_after = await unannounced_steps_within(stack, 0)
    await asyncio.sleep(1.0)  # the sweep does not announce it again
    settled = await announced(stack, quiz_id)
    await api.call("AdvanceQuestion", {"quiz_id": quiz_id}, host)  # ends question 0
    await api.call("AdvanceQuestion", {"quiz_id": quiz_id}, host)  # opens question 1
    after_advance = await announced(stack, quiz_id)

    assert started["quiz"]["state"] == "QUIZ_STATE_RUNNING"  # committed: the host is told so
    assert refused.value.code == grpc.StatusCode.UNAVAILABLE
    assert "has not reached its watchers yet" in refused.value.message
    assert unannounced == []
    assert (alarm, alarm_after) == (1, 0)  # quizmesh_unannounced_steps, for an alert
    assert later == settled == ["quiz_started", "opened 0"]
    assert after_advance == ["quiz_started", "opened 0", "closed 0", "opened 1"]


async def test_an_advance_and_a_close_that_could_not_be_announced_are_announced_in_order(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, host, quiz_id = await hosted_quiz(stack)
    await api.call("StartQuiz", {"quiz_id": quiz_id}, host)
    outage = Outage(monkeypatch, quiz_id)

    await api.call("AdvanceQuestion", {"quiz_id": quiz_id}, host)  # ends question 0 early
    outage.on = False
    revealed = await announced_within(stack, quiz_id, count=3)
    outage.on = True
    await api.call("AdvanceQuestion", {"quiz_id": quiz_id}, host)  # opens question 1
    outage.on = False
    advanced = await announced_within(stack, quiz_id, count=4)
    outage.on = True
    closed = await api.call("CloseQuiz", {"quiz_id": quiz_id}, host)
    outage.on = False
    ended = await announced_within(stack, quiz_id, count=6)

    assert revealed == ["quiz_started", "opened 0", "closed 0"]
    assert advanced == [*revealed, "opened 1"]
    assert closed["quiz"]["state"] == "QUIZ_STATE_CLOSED"
    assert ended == [*advanced, "closed 1", "quiz_closed"]
