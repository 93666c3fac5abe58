"""How often a quiz's board may change on its watchers' screens.

The leaderboard service publishes a quiz's snapshots at this pace and the stream
service passes them on to its watchers at the same pace, so a snapshot goes out as
it arrives instead of waiting for a board slot. Small quizzes get boards sooner:
their fan-out is cheap (1,000 watchers at 150 ms are ~7,000 messages a second), and
a board's age is most of what a player waits for (docs/performance.md, "End to end");
a stadium keeps the slower pace its capacity plan counts.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BoardPace:
    # Seconds between two boards of a quiz of more than `small_players` players.
    interval: float
    # Seconds between two boards of a smaller quiz.
    small_interval: float
    small_players: int

    @classmethod
    def of(cls, interval: float, small_interval_ms: int, small_players: int) -> BoardPace:
        """A pace whose small quizzes are never slower than its large ones."""
        return cls(interval, min(interval, small_interval_ms / 1000), small_players)

    def interval_for(self, total_players: int) -> float:
        return self.small_interval if total_players <= self.small_players else self.interval
