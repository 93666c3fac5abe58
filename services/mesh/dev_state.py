"""What `make run` and the tools keep on a developer's machine (.quizmesh/), and the
mark every development key carries inside its file, so that a copy of one moved
anywhere is still refused in production (see config.py)."""

from __future__ import annotations

import json
from pathlib import Path

DEV_STATE_DIR = Path(".quizmesh")
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
