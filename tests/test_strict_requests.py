"""A request says exactly what it means: a field the call needs and did not send,
or one the contract does not have, is refused with INVALID_ARGUMENT (HTTP 400)
naming it, over HTTP/JSON and gRPC alike, and nothing is written. A misspelt
"choice" is never read as choice_index 0 and the real answer then refused as a
changed one."""

from __future__ import annotations

from typing import Any

import grpc
import httpx
import pytest
from quizmesh.score.v1 import score_pb2

from tests.api import Api, GrpcApi, HttpApi
from tests.game import REFERENCE_QUIZ, Player, join, refused
from tests.stack import Stack

pytestmark = pytest.mark.usefixtures("stack")


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.fixture(params=["grpc", "http"])
def api(request: pytest.FixtureRequest, stack: Stack) -> Api:
    if request.param == "http":
        return HttpApi(request.getfixturevalue("http"))
    return GrpcApi(stack.channels)


async def started_quiz(api: Api, stack: Stack) -> tuple[str, Player]:
    host = stack.host_token("alice")
    quiz_id = str((await api.call("CreateQuiz", REFERENCE_QUIZ, host))["quiz"]["quiz_id"])
    player = await join(api, quiz_id, "pia")
    await api.call("StartQuiz", {"quiz_id": quiz_id}, host)
    return quiz_id, player


async def answers_of(api: Api, quiz_id: str, player: Player) -> list[Any]:
    score = await api.call(
        "GetPlayerScore", {"quiz_id": quiz_id, "player_id": player.player_id}, player.token
    )
    return list(score["answers"])


@pytest.mark.parametrize("left_out", ["choice_index", "question_index"])
async def test_an_answer_without_a_needed_field_is_refused_naming_it(
    api: Api, stack: Stack, left_out: str
) -> None:
    quiz_id, pia = await started_quiz(api, stack)
    request = {"quiz_id": quiz_id, "question_index": 0, "choice_index": 1}
    del request[left_out]

    e = await refused(api.call("SubmitAnswer", request, pia.token))

    assert e.code == grpc.StatusCode.INVALID_ARGUMENT
    assert e.reason == "FIELD_INVALID"
    assert e.violations == [(left_out, "is required: send it")]
    assert await answers_of(api, quiz_id, pia) == []


async def test_a_choice_of_zero_that_is_sent_counts(api: Api, stack: Stack) -> None:
    quiz_id, pia = await started_quiz(api, stack)

    reply = await api.call(
        "SubmitAnswer", {"quiz_id": quiz_id, "question_index": 0, "choice_index": 0}, pia.token
    )

    assert reply["result"]["choice_index"] == 0


async def test_a_question_without_its_correct_choice_is_refused(api: Api, stack: Stack) -> None:
    question = {k: v for k, v in REFERENCE_QUIZ["questions"][0].items() if k != "correct_choice"}

    e = await refused(
        api.call("CreateQuiz", {"title": "t", "questions": [question]}, stack.host_token("alice"))
    )

    assert e.code == grpc.StatusCode.INVALID_ARGUMENT
    assert ("questions[0].correct_choice", "is required: send it") in e.violations


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"question_index": 0, "choice": 1}, "choice"),
        ({"question_index": 0, "choice_index": 1, "colour": "red"}, "colour"),
        # The path sets the quiz; a body naming it too would be ignored silently.
        ({"quiz_id": "OTHER", "question_index": 0, "choice_index": 1}, "quiz_id"),
    ],
)
async def test_an_answer_body_naming_a_field_the_contract_lacks_is_refused(
    http: httpx.AsyncClient, stack: Stack, body: dict[str, Any], named: str
) -> None:
    api = HttpApi(http)
    quiz_id, pia = await started_quiz(api, stack)

    response = await http.post(
        f"/v1/quizzes/{quiz_id}/answers", json=body, headers=bearer(pia.token)
    )

    assert response.status_code == 400, response.text
    payload = response.json()
    assert payload["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert named in payload["message"]
    info, bad = payload["details"]
    assert info["reason"] == "FIELD_INVALID"
    assert bad["field_violations"][0]["field"] == named
    # Nothing was scored: the real answer is still accepted.
    await api.call(
        "SubmitAnswer", {"quiz_id": quiz_id, "question_index": 0, "choice_index": 1}, pia.token
    )
    assert len(await answers_of(api, quiz_id, pia)) == 1


async def test_a_misspelt_field_inside_a_question_is_named_with_its_place(
    http: httpx.AsyncClient, stack: Stack
) -> None:
    question = {**REFERENCE_QUIZ["questions"][0], "correct": 1}

    response = await http.post(
        "/v1/quizzes",
        json={"title": "t", "questions": [REFERENCE_QUIZ["questions"][0], question]},
        headers=bearer(stack.host_token("alice")),
    )

    assert response.status_code == 400, response.text
    assert response.json()["details"][1]["field_violations"][0]["field"] == "questions[1].correct"


async def test_camel_case_names_of_the_contract_are_accepted(
    http: httpx.AsyncClient, stack: Stack
) -> None:
    api = HttpApi(http)
    quiz_id, pia = await started_quiz(api, stack)

    response = await http.post(
        f"/v1/quizzes/{quiz_id}/answers",
        json={"questionIndex": 0, "choiceIndex": 1},
        headers=bearer(pia.token),
    )

    assert response.status_code == 200, response.text


async def test_a_grpc_request_with_a_field_number_the_contract_lacks_is_refused(
    stack: Stack,
) -> None:
    api = GrpcApi(stack.channels)
    quiz_id, pia = await started_quiz(api, stack)
    known = score_pb2.SubmitAnswerRequest(quiz_id=quiz_id, question_index=0, choice_index=1)
    # Field 9 as a varint: what a client built from another version of the proto sends.
    raw = known.SerializeToString() + b"\x48\x05"
    submit: grpc.aio.UnaryUnaryMultiCallable[bytes, score_pb2.SubmitAnswerResponse] = (
        stack.channels["score"].unary_unary(
            "/quizmesh.score.v1.ScoreService/SubmitAnswer",
            request_serializer=None,
            response_deserializer=score_pb2.SubmitAnswerResponse.FromString,
        )
    )

    with pytest.raises(grpc.aio.AioRpcError) as e:
        await submit(raw, metadata=(("authorization", f"Bearer {pia.token}"),))

    assert e.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "#9" in (e.value.details() or "")
    assert await answers_of(api, quiz_id, pia) == []
