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
random players (points up, reached now), a few joins (a tie at 0 points) and a few
leaving. Figures are CPU time of this process (time.process_time): the machine
may be shared, and wall time would count the neighbours. Memory is what tracemalloc
sees the copy allocate. The SortedList runs the first snapshots in lockstep and
both must give the same places. Prints a table per case and one JSON line.
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
from sortedcontainers import SortedList

from services.live.layout import SCALE, pack, points_of
from services.stream.local_board import LocalBoard

ENROL_BATCH = 5_000  # players enrolled in one batch share their join millisecond
QUIZ_MS = 600_000  # reached times of scored players spread over ten minutes
SNAPSHOT_MS = 250  # 4 snapshots/s
SORTED_LIST_SNAPSHOTS = 3

Changes = list[tuple[str, float | None]]


def cpu_ms(work: Callable[[], object]) -> float:
    gc.collect()
    started = time.process_time()
    work()
    return (time.process_time() - started) * 1e3


@dataclass
class Quiz:
    """The board's players and how each snapshot changes it."""

    rng: np.random.Generator
    player_ids: list[str]
    packed: list[float]
    now_ms: int = QUIZ_MS
    joined: int = 0

    @classmethod
    def under_way(cls, players: int, seed: int) -> Quiz:
        rng = np.random.default_rng(seed)
        ids = [f"{i:016x}" for i in rng.integers(0, 2**63, players, dtype=np.int64).tolist()]
        scored = rng.random(players) >= 0.2
        points = np.where(scored, rng.integers(1, 41, players) * 50, 0)
        # Unscored players keep the millisecond of their enrolment batch.
        enrolled = -(np.arange(players) // ENROL_BATCH)
        reached = np.where(scored, rng.integers(0, QUIZ_MS, players), enrolled)
        packed = (points * SCALE - reached).astype(np.float64).tolist()
        return cls(rng, ids, packed)

    def entries(self) -> list[tuple[str, float]]:
        return list(zip(self.player_ids, self.packed, strict=True))

    def redis_order(self) -> list[tuple[str, float]]:
        """The entries as ZREVRANGE lists them (how a copy reads the board)."""
        ids = np.array(self.player_ids, dtype="S32")
        order = np.lexsort((ids, np.array(self.packed)))[::-1].tolist()
        return [(self.player_ids[i], self.packed[i]) for i in order]

    def snapshot(self, board: LocalBoard, count: int, players: int) -> Changes:
        """`count` changes: mostly answers, 1% joins and 1% players leaving."""
        self.now_ms += SNAPSHOT_MS
        joins = leaves = max(1, count // 100)
        picked = self.rng.integers(0, players, count - joins).tolist()
        changes: Changes = []
        for i in picked[:-leaves]:
            old = board.score_of(self.player_ids[i])
            if old is not None:
                award = int(self.rng.integers(1, 21)) * 50
                changes.append((self.player_ids[i], pack(points_of(old) + award, self.now_ms)))
        changes += [(self.player_ids[i], None) for i in picked[-leaves:]]
        for _ in range(joins):
            self.joined += 1
            changes.append((f"new{self.joined}", pack(0, self.now_ms)))
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


def traced_mb(build: Callable[[], object]) -> tuple[float, object]:
    """MB the built thing keeps (tracemalloc), and the thing."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    built = build()
    kept = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return kept / 1e6, built


def run_case(
    players: int, watchers: int, changes: int, snapshots: int, seed: int
) -> dict[str, Any]:
    quiz = Quiz.under_way(players, seed)
    ordered, unordered = quiz.redis_order(), quiz.entries()
    board = LocalBoard()
    reset_ms = cpu_ms(lambda: board.reset(ordered))
    reset_unordered_ms = cpu_ms(lambda: LocalBoard().reset(unordered))
    memory_mb, _ = traced_mb(lambda: _reset(ordered))
    strings_mb = sum(map(sys.getsizeof, quiz.player_ids)) / 1e6
    started = time.process_time()
    sorted_board = SortedBoard(ordered)
    sorted_build_ms = (time.process_time() - started) * 1e3
    sorted_memory_mb, _ = traced_mb(lambda: SortedBoard(ordered))
    del ordered, unordered

    watching = [quiz.player_ids[i] for i in quiz.rng.choice(players, watchers, replace=False)]
    apply_ms, places_ms, sorted_apply_ms, sorted_places_ms = [], [], [], []
    for n in range(snapshots):
        batch = quiz.snapshot(board, changes, players)
        apply_ms.append(cpu_ms(lambda: board.apply(batch)))
        places: dict[str, tuple[int, int]] = {}
        places_ms.append(cpu_ms(lambda: places.update(board.places(watching))))
        if n < SORTED_LIST_SNAPSHOTS:
            sorted_apply_ms.append(cpu_ms(lambda: sorted_board.apply(batch)))
            expected: dict[str, tuple[int, int]] = {}
            sorted_places_ms.append(cpu_ms(lambda: expected.update(sorted_board.places(watching))))
            if places != expected:
                raise AssertionError("LocalBoard and SortedList disagree on places")
    return {
        "players": players,
        "watchers": watchers,
        "changes": changes,
        "snapshots": snapshots,
        "on_board": len(board),
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
        f"\n{case['players']:,} players, {case['watchers']:,} watchers, "
        f"{case['changes']:,} changes per snapshot, {case['snapshots']} snapshots "
        f"(CPU ms, time.process_time)"
    )
    rows = [
        ("", "LocalBoard", "SortedList"),
        ("places p50", case["places_ms"]["p50"], s["places_ms"]["p50"]),
        ("places max", case["places_ms"]["max"], s["places_ms"]["max"]),
        ("apply p50", case["apply_ms"]["p50"], s["apply_ms"]["p50"]),
        ("apply max", case["apply_ms"]["max"], s["apply_ms"]["max"]),
        ("reset, Redis order", case["reset_ms"], s["build_ms"]),
        ("reset, unordered", case["reset_unordered_ms"], "-"),
        ("memory MB (tracemalloc)", case["memory_mb"], s["memory_mb"]),
    ]
    for name, ours, theirs in rows:
        print(f"  {name:<24}{ours:>12}{theirs:>12}")
    print(
        f"  SortedList/LocalBoard places: {s['places_ms']['p50'] / case['places_ms']['p50']:.0f}x; "
        f"the copy's memory leaves out the id strings it keeps ({case['id_strings_mb']} MB)"
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
