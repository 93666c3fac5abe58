"""Prints the quizmesh-keys Secret: the ES256 key the quiz service signs player tokens
with (signing-key.pem) and the JWKS that Envoy and the services verify them with
(jwks.json). Pipe it to kubectl; the private key touches no disk on the way:

    .venv/bin/python scripts/k8s_keys.py --namespace quizmesh | kubectl apply -f -

Rotating keys without logging anyone out takes three applies, with a rollout restart
after each (docs/operations.md, "Rotate the token keys"): --signing-key signs with a
key you have (a PEM file; --generate writes a new one), --trust adds the public keys
of more files (PEM keys or a JWKS) to the JWKS.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from services.identity.keys import jwks_for
from services.mesh.dev_state import is_dev_key_file

SECRET_NAME = "quizmesh-keys"


def generate_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_signing_key(path: Path) -> ec.EllipticCurvePrivateKey:
    if is_dev_key_file(path):
        raise SystemExit(f"{path}: a development key; production needs a key of its own")
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise SystemExit(f"{path}: not an ES256 (P-256) private key")
    return key


def trusted_keys(path: Path) -> list[dict[str, Any]]:
    """The JWKs of a JWKS file, or of the public half of a PEM key."""
    data = path.read_bytes()
    if data.lstrip().startswith(b"{"):
        return list(json.loads(data)["keys"])
    if b"PRIVATE KEY" in data:
        public = serialization.load_pem_private_key(data, password=None).public_key()
    else:
        public = serialization.load_pem_public_key(data)
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise SystemExit(f"{path}: not an EC key")
    return list(jwks_for(public)["keys"])


def keys_secret(
    signing_key: ec.EllipticCurvePrivateKey,
    trust: Sequence[Path] = (),
    name: str = SECRET_NAME,
    namespace: str | None = None,
) -> dict[str, Any]:
    """The Secret manifest: the signing key, and a JWKS with its public key first."""
    jwks: list[dict[str, Any]] = list(jwks_for(signing_key.public_key())["keys"])
    for path in trust:
        for jwk in trusted_keys(path):
            if all(jwk["kid"] != known["kid"] for known in jwks):
                jwks.append(jwk)
    files = {
        "jwks.json": json.dumps({"keys": jwks}, indent=2).encode(),
        "signing-key.pem": private_pem(signing_key),
    }
    metadata: dict[str, Any] = {
        "name": name,
        "labels": {"app.kubernetes.io/part-of": "quizmesh"},
    }
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "Opaque",
        "data": {k: base64.b64encode(v).decode() for k, v in files.items()},
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="scripts/k8s_keys.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--namespace", help="the Secret's namespace (default: kubectl's)")
    parser.add_argument("--name", default=SECRET_NAME, help=f"the Secret's name ({SECRET_NAME})")
    parser.add_argument(
        "--signing-key", type=Path, metavar="PEM", help="sign with this key (default: a new one)"
    )
    parser.add_argument(
        "--trust",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="also accept tokens signed by this key (PEM key or JWKS; repeatable)",
    )
    parser.add_argument(
        "--generate",
        type=Path,
        metavar="PEM",
        help="only write a new private key to this file (mode 0600) and exit",
    )
    args = parser.parse_args(argv)

    if args.generate:
        fd = os.open(args.generate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(private_pem(generate_key()))
        print(f"new signing key in {args.generate}", file=sys.stderr)
        return
    key = load_signing_key(args.signing_key) if args.signing_key else generate_key()
    secret = keys_secret(key, args.trust, args.name, args.namespace)
    sys.stdout.write(yaml.safe_dump(secret, sort_keys=False))


if __name__ == "__main__":
    main()
