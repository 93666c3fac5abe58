"""The host's signed-in session: `quizctl login` (or `signup`) keeps it in a file
only its owner can read, host commands use it when no --token / --as / QUIZMESH_TOKEN
/ QUIZMESH_HOST is given (refreshing the access token first when it has under a
minute left), and `quizctl logout` ends it on the server and forgets it here."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from quizmesh.quiz.v1 import account_pb2

# An access token with less left than this is refreshed before a command uses it.
REFRESH_MARGIN_SECONDS = 60


@dataclass(frozen=True, slots=True)
class StoredSession:
    target: str  # the gateway that issued it: a session is no good elsewhere
    host_id: str
    email: str
    display_name: str
    access_token: str
    access_expires_ms: int
    refresh_token: str

    def fresh(self) -> bool:
        left_ms = self.access_expires_ms - int(time.time() * 1000)
        return left_ms > REFRESH_MARGIN_SECONDS * 1000

    def renewed(self, session: account_pb2.Session) -> StoredSession:
        return StoredSession(
            self.target,
            self.host_id,
            self.email,
            self.display_name,
            session.access_token,
            session.access_expires_at.ToMilliseconds(),
            session.refresh_token,
        )


def of_response(target: str, host: account_pb2.Host, session: account_pb2.Session) -> StoredSession:
    return StoredSession(
        target,
        host.host_id,
        host.email,
        host.display_name,
        session.access_token,
        session.access_expires_at.ToMilliseconds(),
        session.refresh_token,
    )


def session_file(environ: Mapping[str, str]) -> Path:
    """QUIZMESH_SESSION_FILE, else quizmesh/session.json in the user's config folder."""
    if environ.get("QUIZMESH_SESSION_FILE"):
        return Path(environ["QUIZMESH_SESSION_FILE"])
    config = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "quizmesh" / "session.json"


def load(environ: Mapping[str, str]) -> StoredSession | None:
    path = session_file(environ)
    try:
        return StoredSession(**json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as e:
        raise SessionFileError(f"cannot read the session in {path} ({e}); run quizctl login") from e


def save(environ: Mapping[str, str], session: StoredSession) -> Path:
    """Writes the session readable by its owner only, replacing the old one whole."""
    path = session_file(environ)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".session-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(asdict(session), out)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def forget(environ: Mapping[str, str]) -> None:
    session_file(environ).unlink(missing_ok=True)


class SessionFileError(Exception):
    """The stored session cannot be used; a message for the user."""
