"""quizctl signup / login / logout and library against the real stack through Envoy:
the session file, host commands that use it, a refresh before it expires, the end
of it, and a library quiz imported, exported and played."""

from __future__ import annotations

import io
import json
import stat
import uuid
from pathlib import Path

import pytest

from devstack.gateway import EnvoyProcess
from quizctl import cli
from quizctl.quizfile import load_quiz_file
from tests.api import ApiError, GrpcApi
from tests.stack import Stack

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "quiz.yaml"
PASSWORD = "a quizctl password"


@pytest.fixture
def environ(gateway: EnvoyProcess, tmp_path: Path) -> dict[str, str]:
    return {
        "QUIZMESH_TARGET": f"127.0.0.1:{gateway.port}",
        "QUIZMESH_SESSION_FILE": str(tmp_path / "session.json"),
    }


def typed(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    """What --password-stdin reads."""
    monkeypatch.setattr("sys.stdin", io.StringIO(text))


def stored(environ: dict[str, str]) -> dict[str, object]:
    return dict(json.loads(Path(environ["QUIZMESH_SESSION_FILE"]).read_text()))


def kept(environ: dict[str, str]) -> bool:
    return Path(environ["QUIZMESH_SESSION_FILE"]).exists()


def file_mode(environ: dict[str, str]) -> int:
    return stat.S_IMODE(Path(environ["QUIZMESH_SESSION_FILE"]).stat().st_mode)


def expire(environ: dict[str, str]) -> None:
    """As if the stored access token had run out."""
    session = {**stored(environ), "access_expires_ms": 0}
    Path(environ["QUIZMESH_SESSION_FILE"]).write_text(json.dumps(session))


async def test_a_host_signs_up_creates_a_quiz_and_signs_out(
    environ: dict[str, str],
    stack: Stack,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    email = f"cli-{uuid.uuid4().hex[:8]}@example.org"
    typed(monkeypatch, PASSWORD + "\n")

    assert (
        await cli.run(["signup", "--email", email, "--name", "Ms Cli", "--password-stdin"], environ)
        == 0
    )
    assert file_mode(environ) == 0o600  # a secret: the owner's only
    assert "signed up and signed in as Ms Cli" in capsys.readouterr().out

    assert await cli.run(["create", str(EXAMPLE)], environ) == 0
    quiz_id = capsys.readouterr().out.strip()
    quiz = await GrpcApi(stack.channels).call("GetQuiz", {"quiz_id": quiz_id})
    assert quiz["quiz"]["host"] == stored(environ)["host_id"]

    refresh = str(stored(environ)["refresh_token"])
    assert await cli.run(["logout"], environ) == 0
    assert not kept(environ)
    with pytest.raises(ApiError, match="SESSION_ENDED"):
        await GrpcApi(stack.channels).call("RefreshSession", {"refresh_token": refresh})
    assert await cli.run(["create", str(EXAMPLE)], environ) == 2
    assert "quizctl login" in capsys.readouterr().err


async def test_a_session_about_to_expire_is_refreshed_first(
    environ: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    email = f"cli-{uuid.uuid4().hex[:8]}@example.org"
    typed(monkeypatch, PASSWORD + "\n")
    await cli.run(["signup", "--email", email, "--name", "R", "--password-stdin"], environ)
    before = stored(environ)
    expire(environ)

    assert await cli.run(["create", str(EXAMPLE)], environ) == 0

    after = stored(environ)
    assert after["refresh_token"] != before["refresh_token"]
    assert int(str(after["access_expires_ms"])) > 0
    assert after["host_id"] == before["host_id"]
    capsys.readouterr()


async def test_login_with_a_wrong_password_says_so_and_keeps_no_session(
    environ: dict[str, str],
    stack: Stack,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    email = f"cli-{uuid.uuid4().hex[:8]}@example.org"
    await GrpcApi(stack.channels).call(
        "SignUp", {"email": email, "password": PASSWORD, "display_name": "W"}
    )
    typed(monkeypatch, "not the password\n")

    status = await cli.run(["login", "--email", email, "--password-stdin"], environ)

    assert status == 2
    assert "UNAUTHENTICATED: wrong email or password" in capsys.readouterr().err
    assert not kept(environ)
    typed(monkeypatch, PASSWORD + "\n")
    assert await cli.run(["login", "--email", email, "--password-stdin"], environ) == 0
    assert stored(environ)["email"] == email


async def test_an_ended_session_asks_to_sign_in_again(
    environ: dict[str, str],
    stack: Stack,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    email = f"cli-{uuid.uuid4().hex[:8]}@example.org"
    typed(monkeypatch, PASSWORD + "\n")
    await cli.run(["signup", "--email", email, "--name", "E", "--password-stdin"], environ)
    refresh = stored(environ)["refresh_token"]
    # Signed out elsewhere (the web client), and this access token is about to expire.
    await GrpcApi(stack.channels).call("SignOut", {"refresh_token": refresh})
    expire(environ)
    capsys.readouterr()

    assert await cli.run(["create", str(EXAMPLE)], environ) == 2

    err = capsys.readouterr().err
    assert f"the session of {email} has ended" in err
    assert f"quizctl login --email {email}" in err
    assert not kept(environ)


async def test_a_signed_in_host_keeps_quizzes_in_the_library_and_plays_them(
    environ: dict[str, str],
    stack: Stack,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    typed(monkeypatch, PASSWORD + "\n")
    email = f"cli-{uuid.uuid4().hex[:8]}@example.org"
    await cli.run(["signup", "--email", email, "--name", "L", "--password-stdin"], environ)
    capsys.readouterr()

    assert await cli.run(["library", "import", str(EXAMPLE)], environ) == 0
    library_id = capsys.readouterr().out.strip()
    exported = tmp_path / "exported.yaml"
    assert await cli.run(["library", "export", library_id, "-o", str(exported)], environ) == 0
    assert await cli.run(["library", "play", library_id], environ) == 0
    first_game = capsys.readouterr().out.strip()
    assert await cli.run(["library", "play", library_id], environ) == 0
    second_game = capsys.readouterr().out.strip()
    assert await cli.run(["library", "list"], environ) == 0
    listed = capsys.readouterr().out

    # The export is a quiz file that says the same quiz.
    assert load_quiz_file(str(exported)) == load_quiz_file(str(EXAMPLE))
    assert first_game != second_game
    for game in (first_game, second_game):
        quiz = (await GrpcApi(stack.channels).call("GetQuiz", {"quiz_id": game}))["quiz"]
        assert quiz["library_quiz_id"] == library_id
    assert library_id in listed
    assert "played   2x" in listed


async def test_the_host_locks_and_unlocks_the_lobby_from_quizctl(
    environ: dict[str, str],
    stack: Stack,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    typed(monkeypatch, PASSWORD + "\n")
    email = f"cli-{uuid.uuid4().hex[:8]}@example.org"
    await cli.run(["signup", "--email", email, "--name", "K", "--password-stdin"], environ)
    capsys.readouterr()
    await cli.run(["create", str(EXAMPLE)], environ)
    quiz_id = capsys.readouterr().out.strip()
    api = GrpcApi(stack.channels)

    assert await cli.run(["lock", quiz_id], environ) == 0
    assert "(lobby locked)" in capsys.readouterr().out
    with pytest.raises(ApiError, match="LOBBY_LOCKED"):
        await api.call("JoinQuiz", {"quiz_id": quiz_id, "nickname": "door"})
    assert await cli.run(["unlock", quiz_id], environ) == 0
    await api.call("JoinQuiz", {"quiz_id": quiz_id, "nickname": "door"})
