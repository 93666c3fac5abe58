"""The gateway retries what a second attempt cannot harm (services/mesh/retries.py):
a read or an answer a replica refused UNAVAILABLE reaches the client as the later
attempt's reply, while a join (a second one would be a second player) is sent once
and its refusal passed on."""

from __future__ import annotations

import uuid

import grpc
import httpx
import yaml
from quizmesh.quiz.v1 import quiz_pb2, quiz_pb2_grpc

from devstack.gateway import render_envoy_config
from services.mesh import retries
from tests.gateway.conftest import (
    QUIZ_ID,
    Backend,
    Keys,
    assert_json_error,
    bearer,
    local_settings,
    new_client_address,
)


def key(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6].upper()}"


async def test_a_read_refused_unavailable_twice_succeeds_on_the_third_attempt(
    http: httpx.AsyncClient, channel: grpc.aio.Channel, backend: Backend
) -> None:
    over_http, over_grpc = key("R"), key("G")
    backend.unavailable_for.update({over_http: 2, over_grpc: 2})

    response = await http.get(f"/v1/quizzes/{over_http}")
    reply = await quiz_pb2_grpc.QuizServiceStub(channel).GetQuiz(
        quiz_pb2.GetQuizRequest(quiz_id=over_grpc)
    )

    assert response.status_code == 200, response.text
    assert response.json()["quiz"]["quiz_id"] == over_http
    assert reply.quiz.quiz_id == over_grpc
    assert backend.count("GetQuiz", over_http) == 3
    assert backend.count("GetQuiz", over_grpc) == 3


async def test_retries_stop_after_four_attempts_with_the_last_refusal(
    http: httpx.AsyncClient, backend: Backend
) -> None:
    quiz_id = key("A")
    backend.unavailable_for[quiz_id] = 10

    response = await http.get(f"/v1/quizzes/{quiz_id}")

    assert "briefly away" in assert_json_error(response, 503, grpc.StatusCode.UNAVAILABLE)
    assert backend.count("GetQuiz", quiz_id) == 4


async def test_an_answer_refused_unavailable_is_sent_again(
    http: httpx.AsyncClient, backend: Backend, keys: Keys
) -> None:
    quiz_id = key("S")
    backend.unavailable_for[quiz_id] = 1

    response = await http.post(
        f"/v1/quizzes/{quiz_id}/answers",
        json={"question_index": 0, "choice_index": 1},
        headers={"x-forwarded-for": new_client_address(), **bearer(keys.token(key("p")))},
    )

    assert response.status_code == 200, response.text
    assert backend.count("SubmitAnswer", quiz_id) == 2


async def test_a_join_refused_unavailable_is_sent_once(
    http: httpx.AsyncClient, backend: Backend
) -> None:
    nickname = key("n")
    backend.unavailable_for[nickname] = 1

    response = await http.post(
        f"/v1/quizzes/{QUIZ_ID}:join",
        json={"nickname": nickname},
        headers={"x-forwarded-for": new_client_address()},
    )

    assert_json_error(response, 503, grpc.StatusCode.UNAVAILABLE)
    assert backend.count("JoinQuiz", nickname) == 1


def test_exactly_the_retried_rpcs_have_a_retry_policy(keys: Keys) -> None:
    config = yaml.safe_load(render_envoy_config(local_settings(keys)))
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    routes = manager["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    with_policy = sorted(
        r["match"]["path"].strip("/").replace("/", ".")
        for r in routes
        if "retry_policy" in r.get("route", {})
    )

    assert with_policy == retries.retried_methods()
