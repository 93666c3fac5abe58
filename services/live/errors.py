"""The refusal every part gives while a quiz's lost live state is being rebuilt."""

from __future__ import annotations

from services.mesh.errors import Reason, Unavailable


def restoring(quiz_id: str) -> Unavailable:
    """UNAVAILABLE: the caller retries in a moment (the rebuild takes seconds)."""
    return Unavailable(
        f"the live state of quiz {quiz_id} is being restored; retry",
        Reason.ERROR_REASON_LIVE_STATE_RESTORING,
    )
