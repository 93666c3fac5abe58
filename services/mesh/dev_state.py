"""What `make run` and the tools keep on a developer's machine (.quizmesh/ of the
checkout), and the mark every development key carries inside its file, so that a
copy of one moved anywhere is still refused in production (see config.py)."""

from __future__ import annotations

import json
from pathlib import Path


def dev_state_dir(package_file: Path = Path(__file__)) -> Path:
    """The checkout's .quizmesh/ when the code runs from a checkout (an editable
    install: `make run`, `quizctl` from .venv), wherever the command is started:
    `quizctl token` run from another folder signs with the keys `make run` made.
    Installed without a checkout (an image), ./.quizmesh as before."""
    checkout = package_file.resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "services").is_dir():
        return checkout / ".quizmesh"
    return Path(".quizmesh")


DEV_STATE_DIR = dev_state_dir()
DEV_KEY_HEADER = b"QuizMesh development key: made on first run; refused in production\n"
DEV_JWKS_MEMBER = "quizmesh_development_key"


def is_dev_key_file(path: Path) -> bool:
    """Whether a signing key (PEM) or JWKS file holds a key made for development."""
    data = path.read_bytes()
    if data.startswith(DEV_KEY_HEADER):
        return True
    try:
        return bool(json.loads(data).get(DEV_JWKS_MEMBER))
    except (ValueError, AttributeError):
        return False
