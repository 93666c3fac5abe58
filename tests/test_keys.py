"""No secret lives in the repo: development keys are made on first run, say what
they are, and a service configured for production refuses to start with one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.k8s_keys import generate_key, private_pem
from services.identity.tokens import (
    DevKeyInProduction,
    Role,
    ensure_dev_keys,
    is_dev_key_file,
    jwks_for,
)
from services.mesh.config import DEV_STATE_DIR, CommonSettings
from services.mesh.connections import token_issuer, token_verifier

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def dev_keys(tmp_path: Path) -> tuple[Path, Path]:
    """Dev keys made as `make run` makes them, then copied out of .quizmesh/."""
    made = tmp_path / "made"
    ensure_dev_keys(made / "signing-key.pem", made / "jwks.json")
    moved = tmp_path / "etc"
    shutil.copytree(made, moved)
    return moved / "signing-key.pem", moved / "jwks.json"


@pytest.fixture
def own_keys(tmp_path: Path) -> tuple[Path, Path]:
    """Keys made for a deployment, as scripts/k8s_keys.py makes them."""
    key = generate_key()
    folder = tmp_path / "deployment"
    folder.mkdir()
    (folder / "signing-key.pem").write_bytes(private_pem(key))
    (folder / "jwks.json").write_text(json.dumps(jwks_for(key.public_key())))
    return folder / "signing-key.pem", folder / "jwks.json"


def production(signing_key: Path, jwks: Path) -> CommonSettings:
    return CommonSettings(environment="production", signing_key_file=signing_key, jwks_file=jwks)


def test_no_key_or_secret_is_committed() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    assert not [f for f in tracked if f.endswith((".pem", ".key")) or "jwks" in f.lower()]
    assert not [f for f in tracked if f.startswith(f"{DEV_STATE_DIR}/")]


def test_production_settings_refuse_the_dev_key_folder() -> None:
    dev, elsewhere = DEV_STATE_DIR / "keys", Path("/etc/quizmesh/keys")
    with pytest.raises(ValueError, match="QUIZMESH_JWKS_FILE outside the dev key folder"):
        production(elsewhere / "signing-key.pem", dev / "jwks.json")
    with pytest.raises(ValueError, match="QUIZMESH_SIGNING_KEY_FILE outside the dev key folder"):
        production(dev / "signing-key.pem", elsewhere / "jwks.json")


def test_dev_keys_carry_their_mark_wherever_they_are_copied(
    dev_keys: tuple[Path, Path], own_keys: tuple[Path, Path]
) -> None:
    assert all(is_dev_key_file(path) for path in dev_keys)
    assert not any(is_dev_key_file(path) for path in own_keys)


def test_production_refuses_a_copied_dev_key_for_verifying_and_signing(
    dev_keys: tuple[Path, Path],
) -> None:
    settings = production(*dev_keys)
    with pytest.raises(DevKeyInProduction, match="holds a development key"):
        token_verifier(settings)
    with pytest.raises(DevKeyInProduction, match="holds a development key"):
        token_issuer(settings)


def test_production_accepts_its_own_keys_and_development_accepts_dev_keys(
    dev_keys: tuple[Path, Path], own_keys: tuple[Path, Path]
) -> None:
    issuer = token_issuer(production(*own_keys))
    verifier = token_verifier(production(*own_keys))
    assert verifier.verify(issuer.issue(Role.HOST, "host-1", 60)).subject == "host-1"
    token_verifier(CommonSettings(signing_key_file=dev_keys[0], jwks_file=dev_keys[1]))


@pytest.mark.parametrize("service", ["quiz", "score", "leaderboard", "stream"])
def test_a_production_service_with_a_dev_key_exits_with_a_clear_message(
    service: str, dev_keys: tuple[Path, Path]
) -> None:
    env = {
        **os.environ,
        "QUIZMESH_ENVIRONMENT": "production",
        "QUIZMESH_SIGNING_KEY_FILE": str(dev_keys[0]),
        "QUIZMESH_JWKS_FILE": str(dev_keys[1]),
        "QUIZMESH_GRPC_PORT": "0",
        "QUIZMESH_METRICS_PORT": "0",
        # Unreachable backends: the keys are checked before any is touched.
        "QUIZMESH_REDIS_URL": "redis://127.0.0.1:1/0",
        "QUIZMESH_NATS_URL": "nats://127.0.0.1:1",
        "QUIZMESH_DATABASE_URL": "mysql+aiomysql://nobody@127.0.0.1:1/none",
    }
    run = subprocess.run(
        [sys.executable, "-c", f"from services.{service}.server import main; main()"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    assert f"quizmesh-{service} will not start: " in run.stderr
    assert "holds a development key" in run.stderr
