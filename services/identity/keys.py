"""Token keys: ids derived from the key itself, JWKS documents, and the development
key pair `make run` and quizctl make on first run (marked as such inside the files,
so production refuses them wherever they are copied: services/mesh/config.py)."""

from __future__ import annotations

import json
import os
from hashlib import sha256
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from services.mesh.dev_state import DEV_JWKS_MEMBER, DEV_KEY_HEADER

ALGORITHM = "ES256"


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """RFC 7638 thumbprint, so the kid changes exactly when the key does."""
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(public_key))
    return str(jwt.utils.base64url_encode(_thumbprint(jwk)).decode())


def _thumbprint(jwk: dict[str, str]) -> bytes:
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"))
    return sha256(canonical.encode()).digest()


def ensure_dev_keys(signing_key_file: Path, jwks_file: Path) -> None:
    """Creates a development key pair on first run (never committed: .quizmesh/).
    PEM allows text before the key, and JWKS members beyond `keys` are ignored by
    verifiers (Envoy included): both carry the development mark."""
    if signing_key_file.exists() and jwks_file.exists():
        return
    key = ec.generate_private_key(ec.SECP256R1())
    signing_key_file.parent.mkdir(parents=True, exist_ok=True)
    jwks_file.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(signing_key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(DEV_KEY_HEADER + pem)
    jwks = {**jwks_for(key.public_key()), DEV_JWKS_MEMBER: True}
    jwks_file.write_text(json.dumps(jwks, indent=2))


def jwks_for(public_key: ec.EllipticCurvePublicKey) -> dict[str, Any]:
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(public_key))
    jwk.update({"kid": key_id(public_key), "alg": ALGORITHM, "use": "sig"})
    return {"keys": [jwk]}
