"""A request's trace id follows it into logs and into the NATS messages it causes."""

from __future__ import annotations

import json
import logging

import nats
import pytest
from quizmesh.quiz.v1 import quiz_pb2
from quizmesh.score.v1 import score_pb2

from services.mesh import tracing
from services.mesh.logs import JsonFormatter
from services.mesh.messaging import Subjects
from tests.api import GrpcApi
from tests.game import REFERENCE_QUIZ, join
from tests.stack import Stack

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE}-00f067aa0ba902b7-01"


def test_log_lines_carry_the_current_trace_id() -> None:
    record = logging.LogRecord("quiz", logging.INFO, __file__, 1, "started", None, None)
    token = tracing.begin(TRACE)
    try:
        line = json.loads(JsonFormatter("quiz").format(record))
    finally:
        tracing.end(token)
    assert (line["trace_id"], line["message"], line["service"]) == (TRACE, "started", "quiz")
    assert "trace_id" not in json.loads(JsonFormatter("quiz").format(record))


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ([("traceparent", TRACEPARENT)], TRACE),
        ([("x-request-id", "4bf92f35-77b3-4da6-a3ce-929d0e0e4736")], TRACE),  # Envoy's
        ([("traceparent", "garbage")], None),
    ],
)
def test_a_call_takes_its_trace_from_traceparent_or_envoys_request_id(
    metadata: list[tuple[str, str]], expected: str | None
) -> None:
    found = tracing.from_metadata(metadata)
    assert found == expected if expected else len(found) == 32 and found != TRACE


async def test_answers_and_events_on_nats_carry_the_callers_trace(stack: Stack) -> None:
    host = stack.host_token("alice")
    api = GrpcApi(stack.channels)
    quiz_id = (await api.call("CreateQuiz", REFERENCE_QUIZ, host))["quiz"]["quiz_id"]
    player = await join(api, quiz_id, "tia")
    traced = (("traceparent", TRACEPARENT),)
    await stack.quiz.StartQuiz(
        quiz_pb2.StartQuizRequest(quiz_id=quiz_id),
        metadata=(("authorization", f"Bearer {host}"), *traced),
    )
    await stack.score.SubmitAnswer(
        score_pb2.SubmitAnswerRequest(quiz_id=quiz_id, question_index=0, choice_index=1),
        metadata=(("authorization", f"Bearer {player.token}"), *traced),
    )
    subjects = Subjects(stack.nats_prefix)
    nc = await nats.connect(stack.backends.nats_url)
    try:
        js = nc.jetstream()
        answer = await js.get_last_msg(subjects.answers_stream, subjects.answers(quiz_id))
        opened = await js.get_last_msg(subjects.events_stream, subjects.events(quiz_id))
    finally:
        await nc.close()
    assert tracing.from_headers(answer.headers) == TRACE
    assert tracing.from_headers(opened.headers) == TRACE
