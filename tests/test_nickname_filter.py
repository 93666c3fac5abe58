"""The operator's nickname filter: what it refuses and what it lets through, and a
refused JoinQuiz that names the field and adds nobody."""

from __future__ import annotations

import uuid
from pathlib import Path

import grpc
import pytest

from services.mesh.app import ServiceApp
from services.quiz import server as quiz_server
from services.quiz.config import Settings as QuizSettings
from services.quiz.nickname_filter import NicknameFilter
from tests.api import ApiError, GrpcApi
from tests.game import REFERENCE_QUIZ
from tests.stack import Stack

BLOCKLIST = NicknameFilter(["idiot", "*poop*", "loser  # mild", "# only a comment"])


@pytest.mark.parametrize(
    "nickname",
    ["idiot", "IDIOT", "ÍDIÖT", "1d10t", "i.d.i.o.t", "i d i o t", "big idiot", "Lo$er", "poopy"],
)
def test_blocked_words_are_refused_however_they_are_written(nickname: str) -> None:
    assert BLOCKLIST.refuses(nickname)


@pytest.mark.parametrize("nickname", ["Ada", "idiots", "Scunthorpe", "Zoë", "only", "comment"])
def test_other_words_and_words_that_only_contain_a_blocked_one_pass(nickname: str) -> None:
    # "idiots" is another word (list it too to refuse it); *poop* matches anywhere.
    assert not BLOCKLIST.refuses(nickname)


def test_without_a_list_nothing_is_refused() -> None:
    assert not NicknameFilter().refuses("idiot")


def write_list(path: Path) -> Path:
    path.write_text("idiot\n")
    return path


async def test_a_refused_nickname_names_the_field_and_joins_nobody(
    stack: Stack, tmp_path: Path
) -> None:
    settings = QuizSettings(
        **stack.common()
        | {
            "key_prefix": f"nick{uuid.uuid4().hex[:8]}:",
            "nickname_blocklist_file": write_list(tmp_path / "blocked.txt"),
        }
    )
    app: ServiceApp = await quiz_server.create_server(settings)
    await app.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{app.port}")
    try:
        api = GrpcApi({"quiz": channel})
        host = stack.host_token("filter-host")
        quiz_id = (await api.call("CreateQuiz", REFERENCE_QUIZ, host))["quiz"]["quiz_id"]

        with pytest.raises(ApiError) as refused:
            await api.call("JoinQuiz", {"quiz_id": quiz_id, "nickname": "B1g 1d10t"})
        joined = await api.call("JoinQuiz", {"quiz_id": quiz_id, "nickname": "Ada"})
        quiz = (await api.call("GetQuiz", {"quiz_id": quiz_id}))["quiz"]
    finally:
        await channel.close()
        await app.stop(1.0)

    error = refused.value
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "FIELD_INVALID")
    assert error.violations == [
        (
            "nickname",
            "is not allowed here (it contains a word this event refuses); choose another",
        )
    ]
    assert joined["player_id"]
    assert quiz["player_count"] == 1
