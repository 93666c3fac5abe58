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
from services.identity.keys import ensure_dev_keys, jwks_for
from services.identity.tokens import Role, TokenIssuer, TokenVerifier
from services.mesh.config import CommonSettings
from services.mesh.dev_state import DEV_STATE_DIR, is_dev_key_file

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
    dev_keys: tuple[Path, Path], own_keys: tuple[Path, Path]
) -> None:
    # Refused as the settings are read, before either key is used.
    dev_signing, dev_jwks = dev_keys
    own_signing, own_jwks = own_keys
    with pytest.raises(ValueError, match=f"{dev_jwks} holds a development key"):
        production(own_signing, dev_jwks)
    with pytest.raises(ValueError, match=f"{dev_signing} holds a development key"):
        production(dev_signing, own_jwks)


def test_production_accepts_its_own_keys_and_development_accepts_dev_keys(
    dev_keys: tuple[Path, Path], own_keys: tuple[Path, Path]
) -> None:
    issuer = TokenIssuer.of(production(*own_keys))
    verifier = TokenVerifier.of(production(*own_keys))
    assert verifier.verify(issuer.issue(Role.HOST, "host-1", 60)).subject == "host-1"
    TokenVerifier.of(CommonSettings(signing_key_file=dev_keys[0], jwks_file=dev_keys[1]))


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
