"""Settings of the score service."""

from __future__ import annotations

from services.core.config import CommonSettings


class Settings(CommonSettings):
    grpc_port: int = 50052
    # How long to wait for JetStream to confirm an answer is stored durably.
    publish_timeout_seconds: float = 2.0
