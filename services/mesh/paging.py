"""Opaque page tokens (AIP-158) over an offset: clients must not build them.

Page sizes need no code here: the contracts bound them (0 means the default)
and the server interceptor refuses what is out of range before a handler runs."""

from __future__ import annotations

import base64

from services.mesh.errors import InvalidArgument


def encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o{offset}".encode()).decode().rstrip("=")


def decode_token(token: str) -> int:
    if not token:
        return 0
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        if raw.startswith("o") and raw[1:].isdigit():
            return int(raw[1:])
    except (ValueError, UnicodeDecodeError):
        pass
    raise InvalidArgument.field(
        "page_token", "is not valid; use next_page_token from a previous response"
    )
