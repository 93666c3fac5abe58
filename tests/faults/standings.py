"""The ranking the answer log implies, and how two rankings differ."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tests.faults.answer_log import AnswerLog


@dataclass(frozen=True)
class Standing:
    player_id: str
    score: int
    reached_ms: int


def expected_standings(log: AnswerLog, player_ids: Iterable[str]) -> list[Standing]:
    """The ranking the log implies: higher total first; equal totals by who reached
    theirs first (the time of their last scoring answer); equal times by player id,
    descending, as a Redis sorted set and the SQL index order them."""
    standings = []
    for pid in player_ids:
        acks = log.of(pid)
        assert len({a.question for a in acks}) == len(acks)
        scoring = [a.answered_ms for a in acks if a.points > 0]
        assert scoring, f"player {pid} never scored; the plan must make everyone score"
        standings.append(Standing(pid, sum(a.points for a in acks), max(scoring)))
    standings.sort(key=lambda s: s.player_id, reverse=True)
    standings.sort(key=lambda s: (-s.score, s.reached_ms))
    return standings


def ranked(standings: list[Standing]) -> list[tuple[int, str, int]]:
    return [(rank, s.player_id, s.score) for rank, s in enumerate(standings, 1)]


def differences(
    got: list[tuple[int, str, int]], want: list[tuple[int, str, int]], what: str
) -> str:
    """A short account of how two rankings differ: wrong totals first, then order."""
    got_scores = {pid: score for _, pid, score in got}
    want_scores = {pid: score for _, pid, score in want}
    lines = [f"{what}: {len(got)} rows, expected {len(want)}"]
    missing = sorted(want_scores.keys() - got_scores.keys())
    extra = sorted(got_scores.keys() - want_scores.keys())
    if missing:
        lines.append(f"  missing players ({len(missing)}): {missing[:5]}")
    if extra:
        lines.append(f"  unknown players ({len(extra)}): {extra[:5]}")
    wrong = [
        (pid, got_scores[pid], want_scores[pid])
        for pid in sorted(got_scores.keys() & want_scores.keys())
        if got_scores[pid] != want_scores[pid]
    ]
    if wrong:
        lines.append(f"  wrong totals ({len(wrong)}), (player, got, expected): {wrong[:8]}")
    misplaced = [(g, w) for g, w in zip(got, want, strict=False) if g != w]
    if misplaced:
        lines.append(f"  rows that differ ({len(misplaced)}), (got, expected):")
        lines += [f"    {g}  vs  {w}" for g, w in misplaced[:8]]
    return "\n".join(lines)
