"""Benchmark of a stream process's own copy of a quiz's board
(services/stream/local_board.py): per leaderboard snapshot, apply the snapshot's
changes and rank every watching player, against the same with a
sortedcontainers.SortedList of (packed score, player id).

    .venv/bin/python -m benchmarks.own_ranks
    .venv/bin/python -m benchmarks.own_ranks --players 1000000 --watchers 10000 --snapshots 10

Without --players it runs two cases, 1,000,000 players with 10,000 watchers and
100,000 with 1,000, and prints their ratios. A case's changes per snapshot default
to players / 80 (12,500 for 1M players: 50,000 answers/s at 4 snapshots/s).

The board is a quiz under way: a fifth of the players have no points yet, enrolled
in bulk batches of 5,000 that share a millisecond (each batch one tie), the rest
have points in steps of 50 reached over ten minutes. Each snapshot is answers of
random players (points up, reached within the snapshot's 250 ms), a few joins (a
tie at 0 points) and a few players leaving.

Figures are CPU time of this process (time.process_time), as the machine may be
shared and wall time would count the neighbours; the loop collects garbage before
each snapshot, not during the timed calls. Memory is what tracemalloc sees the
copy allocate (numpy reports its arrays to it). The SortedList runs the first
snapshots in lockstep, and both must give the same places. Prints a table per
case and one JSON line.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sortedcontainers import SortedList  # type: ignore[import-untyped]

from services.live.layout import SCALE, pack, points_of
from services.stream.local_board import LocalBoard

ENROL_BATCH = 5_000  # players enrolled in one batch share their join millisecond
QUIZ_MS = 600_000  # reached times of scored players spread over ten minutes
SNAPSHOT_MS = 250  # 4 snapshots/s
SORTED_LIST_SNAPSHOTS = 3

Changes = list[tuple[str, float | None]]


def cpu_ms(work: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    """What `work(*args)` returns and the CPU ms it took (no collection meanwhile:
    the loop collects before each snapshot, with its data not yet made)."""
    gc.disable()
    try:
        started = time.process_time()
        result = work(*args)
        return result, (time.process_time() - started) * 1e3
    finally:
        gc.enable()


@dataclass
class Quiz:
    """The board's players and how each snapshot changes it."""

    rng: np.random.Generator
    player_ids: list[str]
    packed: list[float | None]  # None: left the board
    now_ms: int = QUIZ_MS

    @classmethod
    def under_way(cls, players: int, seed: int) -> Quiz:
        rng = np.random.default_rng(seed)
        ids = [f"{i:016x}" for i in rng.integers(0, 2**63, players, dtype=np.int64).tolist()]
        scored = rng.random(players) >= 0.2
        points = np.where(scored, rng.integers(1, 41, players) * 50, 0)
        # Unscored players keep the millisecond of their enrolment batch.
        enrolled = np.cumsum(~scored) // ENROL_BATCH
        reached = np.where(scored, rng.integers(0, QUIZ_MS, players), enrolled)
        packed: list[float | None] = (points * SCALE - reached).astype(np.float64).tolist()
        return cls(rng, ids, packed)

    def entries(self) -> list[tuple[str, float]]:
        return [(p, s) for p, s in zip(self.player_ids, self.packed, strict=True) if s is not None]

    def redis_order(self) -> list[tuple[str, float]]:
        """The entries as ZREVRANGE lists them (how a copy reads the board)."""
        entries = self.entries()
        ids = np.array([pid for pid, _ in entries], dtype="S32")
        order = np.lexsort((ids, np.array([score for _, score in entries])))
        return [entries[i] for i in order[::-1].tolist()]

    def ties(self) -> int:
        """Players on the board who share their packed score with another."""
        _, counts = np.unique([s for s in self.packed if s is not None], return_counts=True)
        return int(counts[counts > 1].sum())

    def snapshot(self, count: int) -> Changes:
        """`count` changes: answers of random players (points up, reached within the
        last SNAPSHOT_MS), 1% joins (who share their join millisecond) and 1% leaving."""
        self.now_ms += SNAPSHOT_MS
        joins = leaves = max(1, count // 100)
        picked = self.rng.integers(0, len(self.player_ids), count - joins).tolist()
        answered = self.rng.integers(self.now_ms - SNAPSHOT_MS, self.now_ms, count).tolist()
        awards = (self.rng.integers(1, 21, count) * 50).tolist()
        changes: Changes = []
        for i, at, award in zip(picked[:-leaves], answered, awards, strict=False):
            old = self.packed[i]
            if old is not None:
                self.packed[i] = pack(points_of(old) + award, at)
                changes.append((self.player_ids[i], self.packed[i]))
        for i in picked[-leaves:]:
            self.packed[i] = None
            changes.append((self.player_ids[i], None))
        for _ in range(joins):
            self.player_ids.append(f"new{len(self.player_ids)}")
            self.packed.append(pack(0, self.now_ms))
            changes.append((self.player_ids[-1], self.packed[-1]))
        return changes


class SortedBoard:
    """The same board as a SortedList of (packed, id): ascending index i is rank N - i
    (ids are ASCII, so str order is Redis's byte order)."""

    def __init__(self, entries: list[tuple[str, float]]) -> None:
        self.scores = dict(entries)
        self.entries = SortedList((score, pid) for pid, score in self.scores.items())

    def apply(self, changes: Changes) -> None:
        for pid, score in changes:
            old = self.scores.pop(pid, None)
            if old is not None:
                self.entries.remove((old, pid))
            if score is not None:
                self.scores[pid] = score
                self.entries.add((score, pid))

    def places(self, player_ids: list[str]) -> dict[str, tuple[int, int]]:
        size = len(self.entries)
        found = {}
        for pid in player_ids:
            score = self.scores.get(pid)
            if score is not None:
                found[pid] = (size - self.entries.index((score, pid)), points_of(score))
        return found


def traced_mb(build: Callable[..., Any], *args: Any) -> float:
    """MB that what `build(*args)` returns keeps allocated (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    built = build(*args)
    kept = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del built
    return kept / 1e6


def run_case(
    players: int, watchers: int, changes: int, snapshots: int, seed: int
) -> dict[str, Any]:
    quiz = Quiz.under_way(players, seed)
    ordered, unordered = quiz.redis_order(), quiz.entries()
    board = LocalBoard()
    # The first reset in a process also pays for its fresh memory (page faults).
    _, first_reset_ms = cpu_ms(board.reset, ordered)
    _, reset_unordered_ms = cpu_ms(board.reset, unordered)
    _, reset_ms = cpu_ms(board.reset, ordered)
    memory_mb = traced_mb(_reset, ordered)
    strings_mb = sum(map(sys.getsizeof, quiz.player_ids)) / 1e6
    ties = quiz.ties()
    sorted_board, sorted_build_ms = cpu_ms(SortedBoard, ordered)
    sorted_memory_mb = traced_mb(SortedBoard, ordered)
    del ordered, unordered

    picked = quiz.rng.choice(players, watchers, replace=False).tolist()
    watching = [quiz.player_ids[i] for i in picked]
    apply_ms, places_ms, sorted_apply_ms, sorted_places_ms = [], [], [], []
    for n in range(snapshots):
        gc.collect()
        batch = quiz.snapshot(changes)
        apply_ms.append(cpu_ms(board.apply, batch)[1])
        places, ms = cpu_ms(board.places, watching)
        places_ms.append(ms)
        if n < SORTED_LIST_SNAPSHOTS:
            sorted_apply_ms.append(cpu_ms(sorted_board.apply, batch)[1])
            expected, ms = cpu_ms(sorted_board.places, watching)
            sorted_places_ms.append(ms)
            if places != expected:
                raise AssertionError("LocalBoard and SortedList disagree on places")
    return {
        "players": players,
        "watchers": watchers,
        "changes": changes,
        "snapshots": snapshots,
        "on_board": len(board),
        "tied_at_start": ties,
        "first_reset_ms": round(first_reset_ms),
        "reset_ms": round(reset_ms),
        "reset_unordered_ms": round(reset_unordered_ms),
        "memory_mb": round(memory_mb, 1),
        "id_strings_mb": round(strings_mb, 1),
        "apply_ms": summary(apply_ms),
        "places_ms": summary(places_ms),
        "sorted_list": {
            "build_ms": round(sorted_build_ms),
            "memory_mb": round(sorted_memory_mb, 1),
            "apply_ms": summary(sorted_apply_ms),
            "places_ms": summary(sorted_places_ms),
        },
    }


def _reset(entries: list[tuple[str, float]]) -> LocalBoard:
    board = LocalBoard()
    board.reset(entries)
    return board


def summary(samples: list[float]) -> dict[str, float]:
    return {"p50": round(statistics.median(samples), 1), "max": round(max(samples), 1)}


def show(case: dict[str, Any]) -> None:
    s = case["sorted_list"]
    print(
        f"\n{case['players']:,} players ({case['tied_at_start']:,} sharing their score), "
        f"{case['watchers']:,} watchers, {case['changes']:,} changes per snapshot, "
        f"{case['snapshots']} snapshots; CPU ms (time.process_time)"
    )
    rows = [
        ("", "LocalBoard", "SortedList"),
        ("places p50", case["places_ms"]["p50"], s["places_ms"]["p50"]),
        ("places max", case["places_ms"]["max"], s["places_ms"]["max"]),
        ("apply p50", case["apply_ms"]["p50"], s["apply_ms"]["p50"]),
        ("apply max", case["apply_ms"]["max"], s["apply_ms"]["max"]),
        ("reset, first", case["first_reset_ms"], s["build_ms"]),
        ("reset, Redis order", case["reset_ms"], "-"),
        ("reset, any order", case["reset_unordered_ms"], "-"),
        ("memory MB", case["memory_mb"], f"{s['memory_mb']} + {case['id_strings_mb']}"),
    ]
    for name, ours, theirs in rows:
        print(f"  {name:<20}{ours:>12}{theirs:>14}")
    compared = min(case["snapshots"], SORTED_LIST_SNAPSHOTS)
    print(
        f"  places {s['places_ms']['p50'] / case['places_ms']['p50']:.0f}x and apply "
        f"{s['apply_ms']['p50'] / case['apply_ms']['p50']:.0f}x faster than the SortedList "
        f"(its first {compared} snapshots, same places); memory by tracemalloc, the "
        "SortedList's plus the id strings it holds"
    )


def main(args: argparse.Namespace) -> None:
    if args.players is not None:
        sizes = [(args.players, args.watchers or 10_000)]
    else:
        sizes = [(1_000_000, 10_000), (100_000, 1_000)]
    cases = []
    for players, watchers in sizes:
        changes = args.changes or players // 80
        cases.append(run_case(players, watchers, changes, args.snapshots, args.seed))
        show(cases[-1])
    if len(cases) == 2:
        big, small = cases
        print(f"\nratios {big['players']:,}/{small['players']:,} players:")
        for key in ("places_ms", "apply_ms"):
            print(f"  {key[:-3]:<8} p50 {big[key]['p50'] / small[key]['p50']:.1f}x")
        print(f"  reset    {big['reset_ms'] / max(small['reset_ms'], 1):.1f}x")
    print(json.dumps({"cases": cases}))


def cli() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--players", type=int, default=None, help="one case of this size")
    parser.add_argument("--watchers", type=int, default=None)
    parser.add_argument("--changes", type=int, default=None, help="per snapshot")
    parser.add_argument("--snapshots", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    main(parser.parse_args())


if __name__ == "__main__":
    cli()
