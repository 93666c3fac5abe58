"""Settings of the quiz service."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from services.mesh.config import CommonSettings


class Settings(CommonSettings):
    grpc_port: int = 50051
    player_token_ttl_seconds: int = 24 * 3600
    # How often each replica looks for questions whose deadline has passed.
    deadline_sweep_ms: int = 200
    # How often each replica checks that every active quiz still has its Redis state.
    restore_check_seconds: float = 1.0
    # Words no nickname may carry, one a line (services/quiz/nickname_filter.py says
    # how they match); none when unset. examples/nickname-blocklist.txt is a start.
    nickname_blocklist_file: Path | None = None
    # Host accounts (services/quiz/accounts.py). "invite": sign-up needs one of
    # sign_up_invite_codes (secrets separated by commas); "closed": none at all.
    sign_up: Literal["open", "invite", "closed"] = "open"
    sign_up_invite_codes: str = ""
    # An access token is a host token that lives this long; its refresh token gets
    # the next one until it expires or the host signs out.
    host_access_ttl_seconds: int = Field(default=900, ge=60, le=24 * 3600)
    host_refresh_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=3600)
    # Per client address per hour; and failed sign-ins per 15 minutes, per email
    # (guessing one host's password) and per address (a school shares one).
    sign_ups_per_address: int = Field(default=20, ge=1)
    failed_sign_ins_per_email: int = Field(default=10, ge=1)
    failed_sign_ins_per_address: int = Field(default=100, ge=1)

    @model_validator(mode="after")
    def _invite_codes_for_invite_only(self) -> Settings:
        if self.sign_up == "invite" and not self.invite_codes():
            raise ValueError(
                "QUIZMESH_SIGN_UP=invite needs QUIZMESH_SIGN_UP_INVITE_CODES (comma-separated)"
            )
        return self

    def invite_codes(self) -> tuple[str, ...]:
        return tuple(c.strip() for c in self.sign_up_invite_codes.split(",") if c.strip())
