"""quizctl against an in-test gateway: small QuizService and LeaderboardService
servers on a free port that record every request and the metadata it carried."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from quizmesh.common.v1 import common_pb2
from quizmesh.leaderboard.v1 import leaderboard_pb2, leaderboard_pb2_grpc
from quizmesh.quiz.v1 import quiz_pb2, quiz_pb2_grpc

from quizctl import cli
from quizctl.quizfile import QuizFileError, load_quiz_file
from services.identity.keys import ensure_dev_keys
from services.identity.tokens import Caller, Role, TokenVerifier
from services.mesh.context import Context
from services.mesh.dev_state import DEV_STATE_DIR, dev_state_dir

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "quiz.yaml"
QUIZ_ID = "QUIZ0001"
NICKNAMES = ["ada", "grace", "linus", "barbara", "ken"]

# What examples/quiz.yaml must turn into, field by field (no points: the default).
EXAMPLE_REQUEST = quiz_pb2.CreateQuizRequest(
    title="Around the World in Five Questions",
    questions=[
        quiz_pb2.QuestionSpec(
            text="What is the capital of Australia?",
            choices=["Sydney", "Melbourne", "Canberra", "Perth"],
            correct_choice=2,
            time_limit_ms=20_000,
        ),
        quiz_pb2.QuestionSpec(
            text="Which planet has the shortest day in the Solar System?",
            choices=["Earth", "Jupiter", "Mars", "Venus"],
            correct_choice=1,
            time_limit_ms=20_000,
        ),
        quiz_pb2.QuestionSpec(
            text="How many hearts does an octopus have?",
            choices=["1", "2", "3", "8"],
            correct_choice=2,
            time_limit_ms=20_000,
        ),
        quiz_pb2.QuestionSpec(
            text="Which element has the chemical symbol Au?",
            choices=["Silver", "Gold", "Argon", "Aluminium"],
            correct_choice=1,
            time_limit_ms=20_000,
        ),
        quiz_pb2.QuestionSpec(
            text="In which year did the first person walk on the Moon?",
            choices=["1965", "1969", "1972", "1981"],
            correct_choice=1,
            time_limit_ms=20_000,
        ),
    ],
)


# --- the in-test gateway ----------------------------------------------------------------


@dataclass
class Call:
    method: str
    request: Message
    metadata: dict[str, str]

    @property
    def bearer(self) -> str:
        scheme, _, token = self.metadata.get("authorization", "").partition(" ")
        assert scheme == "Bearer", self.metadata
        return token


@dataclass
class Gateway:
    target: str = ""
    calls: list[Call] = field(default_factory=list)

    def record(self, method: str, request: Message, context: Context) -> None:
        metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        self.calls.append(Call(method, request, metadata))


def running_quiz(state: common_pb2.QuizState.ValueType, current: int) -> quiz_pb2.Quiz:
    """A quiz made from the example, 5 s into its current question."""
    now = Timestamp(seconds=1_700_000_005)
    quiz = quiz_pb2.Quiz(
        quiz_id=QUIZ_ID,
        title=EXAMPLE_REQUEST.title,
        host="alice",
        state=state,
        question_count=len(EXAMPLE_REQUEST.questions),
        current_question=current,
        player_count=3,
        create_time=Timestamp(seconds=1_699_990_000),
        server_time=now,
    )
    for index, spec in enumerate(EXAMPLE_REQUEST.questions[: current + 1]):
        quiz.questions.append(
            common_pb2.QuestionView(
                index=index,
                text=spec.text,
                choices=spec.choices,
                points=1000,
                time_limit_ms=spec.time_limit_ms,
                opened_at=Timestamp(seconds=now.seconds - 5),
                deadline=Timestamp(seconds=now.seconds + 15),
                correct_choice=spec.correct_choice,
            )
        )
    return quiz


class FakeQuizService(quiz_pb2_grpc.QuizServiceServicer):
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def _known(self, quiz_id: str, context: Context) -> None:
        if quiz_id != QUIZ_ID:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"quiz {quiz_id} does not exist")

    async def CreateQuiz(
        self, request: quiz_pb2.CreateQuizRequest, context: Context
    ) -> quiz_pb2.CreateQuizResponse:
        self.gateway.record("CreateQuiz", request, context)
        quiz = running_quiz(common_pb2.QUIZ_STATE_OPEN, -1)
        return quiz_pb2.CreateQuizResponse(quiz=quiz)

    async def GetQuiz(
        self, request: quiz_pb2.GetQuizRequest, context: Context
    ) -> quiz_pb2.GetQuizResponse:
        self.gateway.record("GetQuiz", request, context)
        await self._known(request.quiz_id, context)
        return quiz_pb2.GetQuizResponse(quiz=running_quiz(common_pb2.QUIZ_STATE_RUNNING, 0))

    async def ListQuizzes(
        self, request: quiz_pb2.ListQuizzesRequest, context: Context
    ) -> quiz_pb2.ListQuizzesResponse:
        self.gateway.record("ListQuizzes", request, context)
        first = running_quiz(common_pb2.QUIZ_STATE_RUNNING, 1)
        second = quiz_pb2.Quiz(
            quiz_id="QUIZ0002", title="Maths", state=common_pb2.QUIZ_STATE_OPEN, question_count=3
        )
        second.current_question = -1
        return quiz_pb2.ListQuizzesResponse(quizzes=[first, second], next_page_token="p2")

    async def JoinQuiz(
        self, request: quiz_pb2.JoinQuizRequest, context: Context
    ) -> quiz_pb2.JoinQuizResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not part of quizctl")
        raise AssertionError("unreachable")

    async def StartQuiz(
        self, request: quiz_pb2.StartQuizRequest, context: Context
    ) -> quiz_pb2.StartQuizResponse:
        self.gateway.record("StartQuiz", request, context)
        await self._known(request.quiz_id, context)
        return quiz_pb2.StartQuizResponse(quiz=running_quiz(common_pb2.QUIZ_STATE_RUNNING, 0))

    async def AdvanceQuestion(
        self, request: quiz_pb2.AdvanceQuestionRequest, context: Context
    ) -> quiz_pb2.AdvanceQuestionResponse:
        self.gateway.record("AdvanceQuestion", request, context)
        await self._known(request.quiz_id, context)
        quiz = running_quiz(common_pb2.QUIZ_STATE_RUNNING, 1)
        return quiz_pb2.AdvanceQuestionResponse(quiz=quiz)

    async def CloseQuiz(
        self, request: quiz_pb2.CloseQuizRequest, context: Context
    ) -> quiz_pb2.CloseQuizResponse:
        self.gateway.record("CloseQuiz", request, context)
        await self._known(request.quiz_id, context)
        return quiz_pb2.CloseQuizResponse(quiz=running_quiz(common_pb2.QUIZ_STATE_CLOSED, 4))

    async def SetLobby(
        self, request: quiz_pb2.SetLobbyRequest, context: Context
    ) -> quiz_pb2.SetLobbyResponse:
        self.gateway.record("SetLobby", request, context)
        await self._known(request.quiz_id, context)
        return quiz_pb2.SetLobbyResponse(quiz=running_quiz(common_pb2.QUIZ_STATE_OPEN, 0))

    async def GetQuizReport(
        self, request: quiz_pb2.GetQuizReportRequest, context: Context
    ) -> quiz_pb2.GetQuizReportResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in this test")
        raise AssertionError

    async def GetQuizReportCsv(
        self, request: quiz_pb2.GetQuizReportCsvRequest, context: Context
    ) -> quiz_pb2.GetQuizReportCsvResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in this test")
        raise AssertionError


class FakeLeaderboardService(leaderboard_pb2_grpc.LeaderboardServiceServicer):
    """Five players; page tokens are offsets."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def GetLeaderboard(
        self, request: leaderboard_pb2.GetLeaderboardRequest, context: Context
    ) -> leaderboard_pb2.GetLeaderboardResponse:
        self.gateway.record("GetLeaderboard", request, context)
        start = int(request.page_token or 0)
        end = start + (request.page_size or 10)
        entries = [
            common_pb2.LeaderboardEntry(
                rank=rank, player_id=f"p{rank}", nickname=name, score=5000 - 900 * rank
            )
            for rank, name in enumerate(NICKNAMES, start=1)
        ]
        return leaderboard_pb2.GetLeaderboardResponse(
            entries=entries[start:end],
            total_players=len(entries),
            next_page_token=str(end) if end < len(entries) else "",
        )

    async def GetPlayerRank(
        self, request: leaderboard_pb2.GetPlayerRankRequest, context: Context
    ) -> leaderboard_pb2.GetPlayerRankResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not part of quizctl")
        raise AssertionError("unreachable")


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    gateway = Gateway()
    server = grpc.aio.server()
    quiz_pb2_grpc.add_QuizServiceServicer_to_server(FakeQuizService(gateway), server)
    leaderboard_pb2_grpc.add_LeaderboardServiceServicer_to_server(
        FakeLeaderboardService(gateway), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    gateway.target = f"127.0.0.1:{port}"
    try:
        yield gateway
    finally:
        await server.stop(None)


@dataclass
class Result:
    code: int
    out: str
    err: str


Quizctl = Callable[..., Awaitable[Result]]


@pytest.fixture
def keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Key files under tmp_path (not created yet), and no identity from the outside."""
    signing_key, jwks = tmp_path / "keys" / "signing-key.pem", tmp_path / "keys" / "jwks.json"
    monkeypatch.setenv("QUIZMESH_SIGNING_KEY_FILE", str(signing_key))
    monkeypatch.setenv("QUIZMESH_JWKS_FILE", str(jwks))
    for name in ("QUIZMESH_TOKEN", "QUIZMESH_HOST", "QUIZMESH_TARGET", "QUIZMESH_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    return signing_key, jwks


@pytest.fixture
def quizctl(capsys: pytest.CaptureFixture[str], keys: tuple[Path, Path]) -> Quizctl:
    async def call(*argv: str) -> Result:
        capsys.readouterr()
        code = await cli.run(argv)
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return call


def verifier(keys: tuple[Path, Path]) -> TokenVerifier:
    return TokenVerifier.from_file(keys[1], issuer="quizmesh", audience="quizmesh")


# --- create --------------------------------------------------------------------------------


async def test_create_sends_the_example_quiz_with_the_bearer_token(
    gateway: Gateway, quizctl: Quizctl
) -> None:
    result = await quizctl("create", str(EXAMPLE), "--target", gateway.target, "--token", "t0k")

    assert result == Result(0, f"{QUIZ_ID}\n", "")
    [call] = gateway.calls
    assert call.method == "CreateQuiz"
    assert call.request == EXAMPLE_REQUEST
    assert call.metadata["authorization"] == "Bearer t0k"


async def test_create_as_a_name_signs_a_host_token_with_the_dev_key(
    gateway: Gateway, quizctl: Quizctl, keys: tuple[Path, Path]
) -> None:
    ensure_dev_keys(*keys)

    result = await quizctl("--as", "alice", "--target", gateway.target, "create", str(EXAMPLE))

    assert result.code == 0
    assert verifier(keys).verify(gateway.calls[0].bearer) == Caller(Role.HOST, "alice")


async def test_create_json_prints_the_response_with_proto_field_names(
    gateway: Gateway, quizctl: Quizctl
) -> None:
    result = await quizctl(
        "create", str(EXAMPLE), "--json", "--target", gateway.target, "--token", "t"
    )

    assert result.code == 0
    quiz = json.loads(result.out)["quiz"]
    assert quiz["quiz_id"] == QUIZ_ID
    assert quiz["state"] == "QUIZ_STATE_OPEN"
    assert quiz["current_question"] == -1
    assert quiz["question_count"] == 5


async def test_create_sends_instant_feedback_when_the_quiz_file_asks_for_it(
    gateway: Gateway, quizctl: Quizctl, tmp_path: Path
) -> None:
    path = tmp_path / "practice.yaml"
    path.write_text(
        "title: Practice\ninstant_feedback: true\nquestions:\n"
        "  - {text: Q, choices: [a, b], correct_choice: 0}\n"
    )

    result = await quizctl("create", str(path), "--target", gateway.target, "--token", "t")

    assert result.code == 0
    [call] = gateway.calls
    assert call.request == quiz_pb2.CreateQuizRequest(
        title="Practice",
        instant_feedback=True,
        questions=[quiz_pb2.QuestionSpec(text="Q", choices=["a", "b"], correct_choice=0)],
    )


BAD_FILES = [
    pytest.param(
        "bad.yaml",
        "title: T\nquestions:\n  - {text: Q, choices: [a, b], correct_choice: 2}\n",
        "bad.yaml: questions[0].correct_choice: must be 0-1 (0-based index into 2 choices), got 2",
        id="index-out-of-range",
    ),
    pytest.param(
        "bad.yaml",
        "title: T\nquestions:\n  - {text: Q, choices: [Paris, Rome], answer: Pari}\n",
        "bad.yaml: questions[0].answer: 'Pari' is not one of the choices; did you mean 'Paris'?",
        id="answer-not-a-choice",
    ),
    pytest.param(
        "bad.yaml",
        "title: T\nquestions:\n  - {text: Q, choices: [yes, no], correct_choice: 0}\n",
        "bad.yaml: questions[0].choices[0]: must be text, got true (a boolean); put it in quotes",
        id="yaml-boolean-choice",
    ),
    pytest.param(
        "bad.yaml",
        "questions:\n  - {text: Q, choices: [a, b], correct_choice: 0}\n",
        "bad.yaml: title: is missing",
        id="missing-title",
    ),
    pytest.param(
        "bad.yaml",
        "title: T\nquestions:\n  - {text: Q, choices: [a, b], corect_choice: 0}\n",
        "bad.yaml: questions[0].corect_choice: unknown field; did you mean correct_choice?",
        id="typo-in-field-name",
    ),
    pytest.param(
        "bad.yaml",
        "title: T\ninstant_feedback: 'yes'\nquestions:\n"
        "  - {text: Q, choices: [a, b], correct_choice: 0}\n",
        "bad.yaml: instant_feedback: must be true or false, got 'yes'",
        id="instant-feedback-not-a-boolean",
    ),
    pytest.param(
        "bad.json",
        '{"title": "T", "questions": [{"text": "Q", "choices": ["a", "b"],'
        ' "correct_choice": 0, "time_limit_seconds": -1}]}',
        "bad.json: questions[0].time_limit_seconds: must be a positive number of seconds, "
        "got -1 (a number)",
        id="json-negative-time-limit",
    ),
    pytest.param(
        "bad.yaml",
        "title: T\nquestions:\n  - text: [unclosed\n",
        "bad.yaml:4:1: invalid YAML",
        id="yaml-syntax",
    ),
]


@pytest.mark.parametrize(("name", "content", "message"), BAD_FILES)
async def test_a_bad_quiz_file_names_the_field_exits_2_and_never_calls_the_server(
    gateway: Gateway, quizctl: Quizctl, tmp_path: Path, name: str, content: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content)

    result = await quizctl("create", str(path), "--target", gateway.target, "--token", "t")

    assert result.code == 2
    assert result.out == ""
    assert f"error: {tmp_path}/{message}" in result.err
    assert "Traceback" not in result.err
    assert gateway.calls == []


def test_every_problem_in_a_quiz_file_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "quiz.yaml"
    path.write_text(
        "title: ''\nquestions:\n"
        "  - {text: Q1, choices: [a], correct_choice: 0}\n"
        "  - {text: Q2, choices: [a, b], answer: a, correct_choice: 0, points: -1}\n"
    )

    with pytest.raises(QuizFileError) as raised:
        load_quiz_file(str(path))

    assert raised.value.problems == [
        f"{path}: title: must not be empty",
        f"{path}: questions[0].choices: must have 2-6 choices, got 1",
        f"{path}: questions[1]: give either correct_choice or answer, not both",
        f"{path}: questions[1].points: must be an integer 0-10000, got -1 (a number)",
    ]


def test_a_quiz_file_may_name_the_answer_by_text_and_the_time_limit_in_seconds(
    tmp_path: Path,
) -> None:
    path = tmp_path / "quiz.json"
    path.write_text(
        json.dumps(
            {
                "title": "Quick",
                "questions": [
                    {"text": "2+2?", "choices": ["3", "4"], "answer": "4", "points": 500},
                    {
                        "text": "Sky?",
                        "choices": ["blue", "red"],
                        "correct_choice": 0,
                        "time_limit_seconds": 7.5,
                    },
                ],
            }
        )
    )

    request = load_quiz_file(str(path))

    assert request == quiz_pb2.CreateQuizRequest(
        title="Quick",
        questions=[
            quiz_pb2.QuestionSpec(text="2+2?", choices=["3", "4"], correct_choice=1, points=500),
            quiz_pb2.QuestionSpec(
                text="Sky?", choices=["blue", "red"], correct_choice=0, time_limit_ms=7500
            ),
        ],
    )
    assert not request.questions[0].HasField("time_limit_ms")


# --- identity ------------------------------------------------------------------------------


async def test_token_creates_dev_keys_once_and_prints_a_host_token_that_verifies(
    quizctl: Quizctl, keys: tuple[Path, Path]
) -> None:
    first = await quizctl("token", "--role", "host", "--subject", "alice", "--ttl", "120")
    second = await quizctl("token", "--subject", "bob")

    assert first.code == 0
    assert f"created development keys; services and Envoy verify with {keys[1]}" in first.err
    assert second.err == ""  # the keys from the first run are reused
    assert verifier(keys).verify(first.out.strip()) == Caller(Role.HOST, "alice")
    assert verifier(keys).verify(second.out.strip()) == Caller(Role.HOST, "bob")
    claims = jwt.decode(first.out.strip(), options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 120


async def test_token_for_a_player_carries_the_quiz(
    quizctl: Quizctl, keys: tuple[Path, Path]
) -> None:
    result = await quizctl("token", "--role", "player", "--subject", "p-7", "--quiz", QUIZ_ID)

    assert result.code == 0
    assert verifier(keys).verify(result.out.strip()) == Caller(Role.PLAYER, "p-7", QUIZ_ID)


async def test_token_for_a_player_without_a_quiz_is_refused(
    quizctl: Quizctl, keys: tuple[Path, Path]
) -> None:
    result = await quizctl("token", "--role", "player", "--subject", "p-7")

    assert result == Result(2, "", "error: a player token belongs to one quiz: add --quiz QUIZ\n")
    assert not keys[0].exists()


async def test_as_without_a_dev_key_explains_and_creates_no_key(
    gateway: Gateway, quizctl: Quizctl, keys: tuple[Path, Path]
) -> None:
    result = await quizctl("start", QUIZ_ID, "--as", "alice", "--target", gateway.target)

    assert result.code == 2
    assert f"error: no signing key at {keys[0]}: run 'quizctl token" in result.err
    assert not keys[0].exists()
    assert gateway.calls == []


async def test_host_commands_without_an_identity_fail_before_calling(
    gateway: Gateway, quizctl: Quizctl
) -> None:
    result = await quizctl("close", QUIZ_ID, "--target", gateway.target)

    assert result.code == 2
    assert "error: this command needs a host: sign in with quizctl login" in result.err
    assert "or pass --token TOKEN or --as NAME" in result.err
    assert gateway.calls == []


async def test_identity_and_target_come_from_the_environment_and_flags_win(
    gateway: Gateway, quizctl: Quizctl, keys: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    ensure_dev_keys(*keys)
    monkeypatch.setenv("QUIZMESH_TARGET", gateway.target)
    monkeypatch.setenv("QUIZMESH_HOST", "carol")

    assert (await quizctl("start", QUIZ_ID)).code == 0
    monkeypatch.setenv("QUIZMESH_TOKEN", "from-env")
    assert (await quizctl("start", QUIZ_ID)).code == 0
    assert (await quizctl("start", QUIZ_ID, "--token", "from-flag")).code == 0
    assert (await quizctl("start", QUIZ_ID, "--as", "dave")).code == 0

    bearers = [call.bearer for call in gateway.calls]
    assert verifier(keys).verify(bearers[0]) == Caller(Role.HOST, "carol")
    assert bearers[1:3] == ["from-env", "from-flag"]
    assert verifier(keys).verify(bearers[3]) == Caller(Role.HOST, "dave")


# --- reading and running quizzes -----------------------------------------------------------


async def test_get_prints_state_current_question_and_players(
    gateway: Gateway, quizctl: Quizctl
) -> None:
    result = await quizctl("get", QUIZ_ID, "--target", gateway.target)

    assert result.code == 0
    lines = result.out.splitlines()
    assert f"quiz      {QUIZ_ID}  Around the World in Five Questions" in lines
    assert "state     RUNNING" in lines
    assert "players   3" in lines
    assert "question  1 of 5, answers close in 15.0 s" in lines
    assert "> 1. What is the capital of Australia?  (1000 points, 20 s)" in lines
    assert "     C  Canberra  (correct)" in lines
    assert gateway.calls[0].request == quiz_pb2.GetQuizRequest(quiz_id=QUIZ_ID)
    assert "authorization" not in gateway.calls[0].metadata  # reading needs no identity


async def test_get_json_keeps_fields_at_their_default(gateway: Gateway, quizctl: Quizctl) -> None:
    result = await quizctl("get", QUIZ_ID, "--json", "--target", gateway.target)

    quiz = json.loads(result.out)["quiz"]
    assert quiz["current_question"] == 0  # the first question, not "absent"
    assert quiz["questions"][0]["correct_choice"] == 2


@pytest.mark.parametrize(
    ("command", "method", "request_type", "state"),
    [
        ("start", "StartQuiz", quiz_pb2.StartQuizRequest, "RUNNING"),
        ("advance", "AdvanceQuestion", quiz_pb2.AdvanceQuestionRequest, "RUNNING"),
        ("close", "CloseQuiz", quiz_pb2.CloseQuizRequest, "CLOSED"),
    ],
)
async def test_lifecycle_commands_call_their_rpc_as_the_host(
    gateway: Gateway,
    quizctl: Quizctl,
    command: str,
    method: str,
    request_type: Any,
    state: str,
) -> None:
    result = await quizctl(command, QUIZ_ID, "--target", gateway.target, "--token", "h")

    assert result.code == 0
    assert f"state     {state}" in result.out.splitlines()
    [call] = gateway.calls
    assert (call.method, call.request, call.bearer) == (method, request_type(quiz_id=QUIZ_ID), "h")


async def test_list_prints_a_table_and_the_next_page(gateway: Gateway, quizctl: Quizctl) -> None:
    result = await quizctl("list", "--page-size", "2", "--target", gateway.target)

    assert result.code == 0
    assert result.out.splitlines() == [
        "QUIZ      STATE    PLAYERS  QUESTION  TITLE",
        "QUIZ0001  RUNNING        3       2/5  Around the World in Five Questions",
        "QUIZ0002  OPEN           0       -/3  Maths",
        "more: quizctl list --page-token p2",
    ]
    assert gateway.calls[0].request == quiz_pb2.ListQuizzesRequest(page_size=2)


async def test_leaderboard_all_follows_every_page_in_rank_order(
    gateway: Gateway, quizctl: Quizctl
) -> None:
    # Connection options may come before the command too.
    result = await quizctl(
        "--target", gateway.target, "leaderboard", QUIZ_ID, "--all", "--page-size", "2"
    )

    assert result.code == 0
    assert result.out.splitlines() == [
        "RANK  NICKNAME  SCORE",
        "   1  ada        4100",
        "   2  grace      3200",
        "   3  linus      2300",
        "   4  barbara    1400",
        "   5  ken         500",
        "5 of 5 players, live",
    ]
    assert [call.request for call in gateway.calls] == [
        leaderboard_pb2.GetLeaderboardRequest(quiz_id=QUIZ_ID, page_size=2, page_token=token)
        for token in ("", "2", "4")
    ]


async def test_leaderboard_without_all_shows_one_page_and_how_to_get_more(
    gateway: Gateway, quizctl: Quizctl
) -> None:
    result = await quizctl("leaderboard", QUIZ_ID, "--page-size", "2", "--target", gateway.target)

    assert result.out.splitlines()[-2:] == [
        "2 of 5 players, live",
        f"more: quizctl leaderboard {QUIZ_ID} --page-token 2 (or --all)",
    ]
    assert len(gateway.calls) == 1


async def test_leaderboard_all_json_is_one_response_with_every_entry(
    gateway: Gateway, quizctl: Quizctl
) -> None:
    result = await quizctl(
        "leaderboard", QUIZ_ID, "--all", "--page-size", "3", "--json", "--target", gateway.target
    )

    board = json.loads(result.out)
    assert [e["nickname"] for e in board["entries"]] == NICKNAMES
    assert (board["total_players"], board["next_page_token"]) == (5, "")


# --- errors --------------------------------------------------------------------------------


async def test_an_rpc_error_prints_its_code_and_details_and_exits_2(
    gateway: Gateway, quizctl: Quizctl
) -> None:
    result = await quizctl("get", "NOPE", "--target", gateway.target)

    assert result == Result(2, "", "error: NOT_FOUND: quiz NOPE does not exist\n")


def quizctl_elsewhere(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m quizctl ARGS` as a user runs it: from `folder`, without QUIZMESH_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUIZMESH_")}
    return subprocess.run(
        [sys.executable, "-m", "quizctl", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_an_unreachable_gateway_exits_1_without_a_traceback(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    done = quizctl_elsewhere(tmp_path, "list", "--target", f"127.0.0.1:{port}", "--timeout", "5")

    assert done.returncode == 1
    assert done.stderr.startswith("error: UNAVAILABLE: ")
    assert f"hint: is the gateway running at 127.0.0.1:{port}?" in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_arguments_exit_2_with_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.build_parser().parse_args(["leaderboard", QUIZ_ID, "--page-size", "0"])

    assert exited.value.code == 2
    assert "--page-size: must be at least 1, got 0" in capsys.readouterr().err


# --- the quiz file's limits are the contract's ---------------------------------------------


def _contract(message: Any, field: str) -> Any:
    """A field's (quizmesh.validate.v1.rules), read from the descriptors as the server
    reads them: the numbers a quiz file is held to."""
    from services.mesh.validation import rules_of

    return rules_of(message.DESCRIPTOR, field)


LIMIT_TITLE = _contract(quiz_pb2.CreateQuizRequest, "title")
LIMIT_QUESTIONS = _contract(quiz_pb2.CreateQuizRequest, "questions")
LIMIT_TEXT = _contract(quiz_pb2.QuestionSpec, "text")
LIMIT_CHOICES = _contract(quiz_pb2.QuestionSpec, "choices")
LIMIT_CORRECT = _contract(quiz_pb2.QuestionSpec, "correct_choice")
LIMIT_POINTS = _contract(quiz_pb2.QuestionSpec, "points")
LIMIT_TIME = _contract(quiz_pb2.QuestionSpec, "time_limit_ms")


def _question_at_the_limits(number: int) -> dict[str, Any]:
    """A question with every field at the contract's upper limit."""
    choices = LIMIT_CHOICES.max_items
    return {
        "text": f"Q{number} ".ljust(LIMIT_TEXT.max_len, "?"),
        "choices": [f"{c} ".ljust(LIMIT_CHOICES.items.max_len, "x") for c in range(choices)],
        "correct_choice": min(LIMIT_CORRECT.lte, choices - 1),
        "points": LIMIT_POINTS.lte,
        "time_limit_ms": LIMIT_TIME.lte,
    }


def _load_document(tmp_path: Path, document: dict[str, Any]) -> quiz_pb2.CreateQuizRequest:
    path = tmp_path / "limits.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return load_quiz_file(str(path))


def test_a_quiz_file_at_the_contracts_limits_is_accepted_and_passes_the_server_check(
    tmp_path: Path,
) -> None:
    from services.mesh.validation import violations

    questions = [_question_at_the_limits(i) for i in range(LIMIT_QUESTIONS.max_items)]
    # The lower limits too, and in the file format's own fields (answer, seconds).
    first = questions[0]
    del first["correct_choice"], first["time_limit_ms"]
    first["answer"] = first["choices"][-1]
    first["points"] = LIMIT_POINTS.gte
    first["time_limit_seconds"] = LIMIT_TIME.gte / 1000
    # Characters are code points, and white space around the text is not counted.
    title = "  " + "é" * (LIMIT_TITLE.max_len - 1) + "😀 "

    request = _load_document(tmp_path, {"title": title, "questions": questions})

    assert len(request.questions) == LIMIT_QUESTIONS.max_items
    assert request.questions[0].correct_choice == LIMIT_CHOICES.max_items - 1
    assert request.questions[0].points == LIMIT_POINTS.gte
    assert request.questions[0].time_limit_ms == LIMIT_TIME.gte
    assert request.questions[1].points == LIMIT_POINTS.lte
    assert request.questions[1].time_limit_ms == LIMIT_TIME.lte
    assert violations(request) == []  # what quizctl accepts, the server accepts


def _one_more_question(document: dict[str, Any]) -> None:
    document["questions"] = [_question_at_the_limits(0)] * (LIMIT_QUESTIONS.max_items + 1)


def _set(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Sets one field of the first question (or the title) to `value`."""

    def change(document: dict[str, Any]) -> None:
        if field == "title":
            document["title"] = value
            return
        question = document["questions"][0]
        if field.startswith("time_limit"):
            question.pop("time_limit_ms", None)
        question[field] = value

    return change


def _one_more_choice(document: dict[str, Any]) -> None:
    question = document["questions"][0]
    question["choices"] = [str(c) for c in range(LIMIT_CHOICES.max_items + 1)]


def _one_more_character_in_a_choice(document: dict[str, Any]) -> None:
    document["questions"][0]["choices"][0] = "x" * (LIMIT_CHOICES.items.max_len + 1)


POINTS_RANGE = f"{LIMIT_POINTS.gte}-{LIMIT_POINTS.lte}"
TIME_RANGE = f"{LIMIT_TIME.gte}-{LIMIT_TIME.lte}"
SECONDS_RANGE = f"{LIMIT_TIME.gte / 1000:g}-{LIMIT_TIME.lte / 1000:g}"
PAST_THE_LIMITS = [
    pytest.param(
        _set("title", "t" * (LIMIT_TITLE.max_len + 1)),
        f"title: must be at most {LIMIT_TITLE.max_len} characters, got {LIMIT_TITLE.max_len + 1}",
        id="title",
    ),
    pytest.param(
        _one_more_question,
        f"questions: must have {LIMIT_QUESTIONS.min_items}-{LIMIT_QUESTIONS.max_items} "
        f"questions, got {LIMIT_QUESTIONS.max_items + 1}",
        id="questions",
    ),
    pytest.param(
        _set("text", "q" * (LIMIT_TEXT.max_len + 1)),
        f"questions[0].text: must be at most {LIMIT_TEXT.max_len} characters, "
        f"got {LIMIT_TEXT.max_len + 1}",
        id="text",
    ),
    pytest.param(
        _one_more_choice,
        f"questions[0].choices: must have {LIMIT_CHOICES.min_items}-{LIMIT_CHOICES.max_items} "
        f"choices, got {LIMIT_CHOICES.max_items + 1}",
        id="choices",
    ),
    pytest.param(
        _one_more_character_in_a_choice,
        f"questions[0].choices[0]: must be at most {LIMIT_CHOICES.items.max_len} characters, "
        f"got {LIMIT_CHOICES.items.max_len + 1}",
        id="choice-text",
    ),
    pytest.param(
        _set("points", LIMIT_POINTS.lte + 1),
        f"questions[0].points: must be an integer {POINTS_RANGE}, "
        f"got {LIMIT_POINTS.lte + 1} (a number)",
        id="points-high",
    ),
    pytest.param(
        _set("points", LIMIT_POINTS.gte - 1),
        f"questions[0].points: must be an integer {POINTS_RANGE}, "
        f"got {LIMIT_POINTS.gte - 1} (a number)",
        id="points-low",
    ),
    pytest.param(
        _set("time_limit_ms", LIMIT_TIME.lte + 1),
        f"questions[0].time_limit_ms: must be an integer {TIME_RANGE} milliseconds, "
        f"got {LIMIT_TIME.lte + 1} (a number)",
        id="time-limit-ms-high",
    ),
    pytest.param(
        _set("time_limit_ms", LIMIT_TIME.gte - 1),
        f"questions[0].time_limit_ms: must be an integer {TIME_RANGE} milliseconds, "
        f"got {LIMIT_TIME.gte - 1} (a number)",
        id="time-limit-ms-low",
    ),
    pytest.param(
        _set("time_limit_seconds", LIMIT_TIME.lte / 1000 + 1),
        f"questions[0].time_limit_seconds: must be {SECONDS_RANGE} seconds, "
        f"got {LIMIT_TIME.lte / 1000 + 1} (a number)",
        id="time-limit-seconds-high",
    ),
    pytest.param(
        _set("time_limit_seconds", (LIMIT_TIME.gte - 1) / 1000),
        f"questions[0].time_limit_seconds: must be {SECONDS_RANGE} seconds, "
        f"got {(LIMIT_TIME.gte - 1) / 1000} (a number)",
        id="time-limit-seconds-low",
    ),
    pytest.param(
        _set("correct_choice", LIMIT_CHOICES.max_items),
        f"questions[0].correct_choice: must be {LIMIT_CORRECT.gte}-{LIMIT_CHOICES.max_items - 1} "
        f"(0-based index into {LIMIT_CHOICES.max_items} choices), got {LIMIT_CHOICES.max_items}",
        id="correct-choice",
    ),
]


@pytest.mark.parametrize(("change", "message"), PAST_THE_LIMITS)
def test_a_quiz_file_one_past_a_contract_limit_is_refused_naming_the_contracts_number(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    document = {"title": "Limits", "questions": [_question_at_the_limits(0)]}
    _load_document(tmp_path, document)  # at the limits: accepted
    change(document)

    with pytest.raises(QuizFileError) as raised:
        _load_document(tmp_path, document)

    assert raised.value.problems == [f"{tmp_path / 'limits.json'}: {message}"]


def test_token_signs_with_the_checkout_s_dev_keys_from_any_folder(tmp_path: Path) -> None:
    # Run elsewhere, quizctl must not make keys of its own there: Envoy (make run)
    # trusts only the checkout's .quizmesh/keys/jwks.json.

    done = quizctl_elsewhere(tmp_path, "token", "--role", "host", "--subject", "alice")

    assert done.returncode == 0, done.stderr
    assert not (tmp_path / ".quizmesh").exists()
    jwks = json.loads((DEV_STATE_DIR / "keys" / "jwks.json").read_text())
    kid = jwt.get_unverified_header(done.stdout.strip())["kid"]
    assert kid in {key["kid"] for key in jwks["keys"]}
    assert DEV_STATE_DIR == REPO / ".quizmesh"


def test_installed_without_a_checkout_the_dev_state_is_in_the_working_folder(
    tmp_path: Path,
) -> None:
    package_file = tmp_path / "site-packages" / "services" / "mesh" / "dev_state.py"

    assert dev_state_dir(package_file) == Path(".quizmesh")


def test_an_exported_quiz_file_loads_back_into_the_same_quiz(tmp_path: Path) -> None:
    from quizctl.quizfile import dump_quiz_file

    questions = [
        quiz_pb2.QuestionSpec(text="Yes or no?", choices=["yes", "no"], correct_choice=1),
        # Set to what would otherwise be defaulted: kept as set.
        quiz_pb2.QuestionSpec(
            text="Which 42?", choices=["24", "42"], correct_choice=1, points=0, time_limit_ms=1500
        ),
        quiz_pb2.QuestionSpec(text="Ünïcode 🎉?", choices=["é", "ß"], correct_choice=0),
    ]
    path = tmp_path / "quiz.yaml"
    path.write_text(dump_quiz_file("Round trip", questions, instant_feedback=True))

    loaded = load_quiz_file(str(path))

    assert loaded == quiz_pb2.CreateQuizRequest(
        title="Round trip", questions=questions, instant_feedback=True
    )
