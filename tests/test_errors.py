"""Every refusal of docs/spec.md#errors, with its gRPC code (and, through Envoy, its HTTP
status), including who-may-do-what: identity comes only from a verified token."""

from __future__ import annotations

import time
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from services.identity.tokens import Role
from tests.api import HTTP_STATUS, Api, ApiError, GrpcApi, HttpApi
from tests.game import REFERENCE_QUIZ, join, next_question, refused
from tests.stack import Stack

pytestmark = pytest.mark.usefixtures("stack")


@pytest.fixture(params=["grpc", "http"])
def api(request: pytest.FixtureRequest, stack: Stack) -> Api:
    """Each case runs against the services directly and through Envoy's HTTP/JSON."""
    if request.param == "http":
        return HttpApi(request.getfixturevalue("http"))
    return GrpcApi(stack.channels)


def expect(error: ApiError, code: grpc.StatusCode, reason: str, *words: str) -> None:
    """The code (and HTTP status), the machine-readable reason (ErrorInfo) and, for
    people, a message with `words`."""
    assert error.code == code, error
    assert error.reason == reason, error
    if error.http_status is not None:
        assert error.http_status == HTTP_STATUS[code]
    for word in words:
        assert word in error.message, error.message


@pytest.fixture
async def quiz_id(api: Api, stack: Stack) -> str:
    created = await api.call("CreateQuiz", REFERENCE_QUIZ, stack.host_token("alice"))
    return str(created["quiz"]["quiz_id"])


def forged(claims: dict[str, Any]) -> str:
    """A well-formed token signed by a key the services do not know."""
    other = ec.generate_private_key(ec.SECP256R1())
    return jwt.encode(claims, other, algorithm="ES256", headers={"kid": "stranger"})


async def test_creating_a_quiz_needs_a_host_token(api: Api, stack: Stack) -> None:
    e = await refused(api.call("CreateQuiz", REFERENCE_QUIZ))
    expect(e, grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MISSING", "token")
    player = stack.backends.issuer().issue(Role.PLAYER, "p1", 60, quiz_id="ABCDEFGH")
    e = await refused(api.call("CreateQuiz", REFERENCE_QUIZ, player))
    expect(e, grpc.StatusCode.PERMISSION_DENIED, "HOST_ONLY", "host")


async def test_expired_and_forged_tokens_are_refused(api: Api, stack: Stack) -> None:
    expired = stack.backends.issuer().issue(Role.HOST, "alice", -10)
    e = await refused(api.call("CreateQuiz", REFERENCE_QUIZ, expired))
    expect(e, grpc.StatusCode.UNAUTHENTICATED, "TOKEN_EXPIRED", "expired")
    claims = {
        "sub": "alice",
        "role": "host",
        "iss": "quizmesh",
        "aud": "quizmesh",
        "exp": int(time.time()) + 60,
    }
    e = await refused(api.call("CreateQuiz", REFERENCE_QUIZ, forged(claims)))
    expect(e, grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")


async def test_malformed_quizzes_are_refused_naming_the_field(api: Api, stack: Stack) -> None:
    host = stack.host_token("alice")
    bad = [
        ({"title": "", "questions": REFERENCE_QUIZ["questions"]}, "title"),
        ({"title": "t", "questions": []}, "questions"),
        (
            {"title": "t", "questions": [{"text": "q", "choices": ["a"], "correct_choice": 0}]},
            "questions[0].choices",
        ),
        (
            {
                "title": "t",
                "questions": [{"text": "q", "choices": ["a", "b"], "correct_choice": 5}],
            },
            "questions[0].correct_choice",
        ),
        (
            {
                "title": "t",
                "questions": [
                    {"text": "q", "choices": ["a", "b"], "correct_choice": 0, "time_limit_ms": 10}
                ],
            },
            "time_limit_ms",
        ),
        (
            {
                "title": "t",
                "questions": [
                    {"text": "q", "choices": ["a", "b"], "correct_choice": 0, "points": -5}
                ],
            },
            "points",
        ),
    ]

    async def quiz_ids() -> list[str]:
        listed = await api.call("ListQuizzes", {"page_size": 100})
        return [q["quiz_id"] for q in listed["quizzes"]]

    before = await quiz_ids()
    for body, field in bad:
        expect(
            await refused(api.call("CreateQuiz", body, host)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "FIELD_INVALID",
            field,
        )
    assert await quiz_ids() == before  # nothing was written


async def test_unknown_quiz_and_player_are_not_found(api: Api, stack: Stack) -> None:
    for rpc, request in [
        ("GetQuiz", {"quiz_id": "NOSUCH23"}),
        ("JoinQuiz", {"quiz_id": "NOSUCH23", "nickname": "x"}),
        ("GetLeaderboard", {"quiz_id": "NOSUCH23"}),
    ]:
        e = await refused(api.call(rpc, request))
        expect(e, grpc.StatusCode.NOT_FOUND, "QUIZ_NOT_FOUND", "NOSUCH23")


async def test_only_the_quizs_host_runs_it(api: Api, stack: Stack, quiz_id: str) -> None:
    bob_host = stack.host_token("bob")
    player = await join(api, quiz_id, "pat")
    for token in (bob_host, player.token):
        for rpc in ("StartQuiz", "AdvanceQuestion", "CloseQuiz"):
            e = await refused(api.call(rpc, {"quiz_id": quiz_id}, token))
            expect(e, grpc.StatusCode.PERMISSION_DENIED, "NOT_THE_HOST", "host")
    e = await refused(api.call("StartQuiz", {"quiz_id": quiz_id}))
    expect(e, grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MISSING")
    quiz = (await api.call("GetQuiz", {"quiz_id": quiz_id}))["quiz"]
    assert quiz["state"] == "QUIZ_STATE_OPEN"  # none of that changed anything


async def test_players_answer_only_as_themselves_in_their_quiz(
    api: Api, stack: Stack, quiz_id: str
) -> None:
    host = stack.host_token("alice")
    other = (await api.call("CreateQuiz", REFERENCE_QUIZ, host))["quiz"]["quiz_id"]
    stranger = await join(api, other, "sam")
    await join(api, quiz_id, "pia")
    await api.call("StartQuiz", {"quiz_id": quiz_id}, host)
    request = {"quiz_id": quiz_id, "question_index": 0, "choice_index": 1}
    expect(
        await refused(api.call("SubmitAnswer", request)),
        grpc.StatusCode.UNAUTHENTICATED,
        "TOKEN_MISSING",
    )
    expect(
        await refused(api.call("SubmitAnswer", request, stranger.token)),
        grpc.StatusCode.PERMISSION_DENIED,
        "NOT_A_PLAYER",
    )
    expect(
        await refused(api.call("SubmitAnswer", request, host)),
        grpc.StatusCode.PERMISSION_DENIED,
        "NOT_A_PLAYER",
    )


async def test_answers_must_fit_the_question(api: Api, stack: Stack, quiz_id: str) -> None:
    host = stack.host_token("alice")
    pia = await join(api, quiz_id, "pia")
    await api.call("StartQuiz", {"quiz_id": quiz_id}, host)
    for q, choice, code, reason, word in [
        (0, 7, grpc.StatusCode.INVALID_ARGUMENT, "FIELD_INVALID", "choice_index"),
        # Within the contract's limit, beyond this question's three choices.
        (0, 3, grpc.StatusCode.INVALID_ARGUMENT, "CHOICE_OUT_OF_RANGE", "choice_index"),
        (0, -1, grpc.StatusCode.INVALID_ARGUMENT, "FIELD_INVALID", "choice_index"),
        (-1, 0, grpc.StatusCode.INVALID_ARGUMENT, "FIELD_INVALID", "question_index"),
        (1, 0, grpc.StatusCode.FAILED_PRECONDITION, "QUESTION_NOT_OPEN", "not open"),
    ]:
        e = await refused(
            api.call(
                "SubmitAnswer",
                {"quiz_id": quiz_id, "question_index": q, "choice_index": choice},
                pia.token,
            )
        )
        expect(e, code, reason, word)
    await next_question(api, quiz_id, host)
    e = await refused(
        api.call(
            "SubmitAnswer", {"quiz_id": quiz_id, "question_index": 0, "choice_index": 1}, pia.token
        )
    )
    expect(e, grpc.StatusCode.FAILED_PRECONDITION, "QUESTION_CLOSED", "question 0 is closed")
    score = await api.call(
        "GetPlayerScore", {"quiz_id": quiz_id, "player_id": pia.player_id}, pia.token
    )
    assert (score["score"], score["answers"]) == (0, [])


async def test_lifecycle_moves_only_forward(api: Api, stack: Stack, quiz_id: str) -> None:
    host = stack.host_token("alice")
    e = await refused(api.call("AdvanceQuestion", {"quiz_id": quiz_id}, host))
    expect(e, grpc.StatusCode.FAILED_PRECONDITION, "QUIZ_NOT_STARTED", "start it first")
    await api.call("StartQuiz", {"quiz_id": quiz_id}, host)
    e = await refused(api.call("StartQuiz", {"quiz_id": quiz_id}, host))
    expect(e, grpc.StatusCode.FAILED_PRECONDITION, "QUIZ_ALREADY_STARTED", "already")
    e = await refused(api.call("JoinQuiz", {"quiz_id": quiz_id, "nickname": "late"}))
    expect(e, grpc.StatusCode.FAILED_PRECONDITION, "QUIZ_ALREADY_STARTED", "joining is closed")
    await api.call("CloseQuiz", {"quiz_id": quiz_id}, host)
    e = await refused(api.call("CloseQuiz", {"quiz_id": quiz_id}, host))
    expect(e, grpc.StatusCode.FAILED_PRECONDITION, "QUIZ_CLOSED", "already closed")


async def test_leaderboard_paging_is_checked(api: Api, stack: Stack, quiz_id: str) -> None:
    e = await refused(api.call("GetLeaderboard", {"quiz_id": quiz_id, "page_size": 5000}))
    expect(e, grpc.StatusCode.INVALID_ARGUMENT, "FIELD_INVALID", "page_size")
    e = await refused(api.call("GetLeaderboard", {"quiz_id": quiz_id, "page_token": "garbage!"}))
    expect(e, grpc.StatusCode.INVALID_ARGUMENT, "FIELD_INVALID", "page_token")
