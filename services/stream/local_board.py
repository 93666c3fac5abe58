"""An exact copy of one quiz's board in this process, ranking as Redis does.

Redis ranks a sorted set by (score, member) descending: the higher packed score
first (services/live/layout.py) and, among equal ones, the member greater in byte
order first. The copy keeps its entries ascending in that order in two aligned
numpy arrays, the packed scores and each entry's slot, so an entry at ascending
index i has rank N - i (ZREVRANK + 1). A slot numbers a player in the table of
players (PlayerTable): the id as fixed-width ASCII bytes, the packed score, and an
index from id to slot.

Every operation is a few vectorized passes, however many players it names:
- finding entries: a binary search on the scores for all of them at once, then,
  for those whose score others share (a join batch at 0 points and the same
  millisecond), a second one over the ids of each tied run, also all at once;
- a batch of changes: the moved entries' old places found, the new ones sorted
  and placed, both arrays rebuilt in one pass (entries move 12 bytes each; the
  ids never move).

Why numpy (benchmarks/own_ranks.py, 1,000,000 players, CPU time): ranking 10,000
watchers takes ~12 ms and applying a snapshot's 12,500 changes ~24 ms, against
~73 ms and ~157 ms with a sortedcontainers.SortedList of (score, id) tuples,
where every rank and every move is Python calls. The copy holds ~74 MB and no
Python object per player.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import compress
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from services.live.layout import SCALE
from services.stream.player_table import ID_BYTES, ID_TYPE, Floats, Ids, Ints, PlayerTable, Slots

# No player's id (ids are ASCII): what an id that cannot be a player's turns into.
NO_PLAYER = b"\xff" * ID_BYTES

Flags = npt.NDArray[np.bool_]
Item = TypeVar("Item", bound=np.generic)


class LocalBoard:
    """An exact copy of one quiz's board in this process, ranking as Redis does."""

    def __init__(self) -> None:
        self._players = PlayerTable(0)
        # Entries ascending by (packed score, id): their scores, and their slots.
        self._packed: Floats = np.empty(0, dtype=np.float64)
        self._slots: Slots = np.empty(0, dtype=np.int32)

    def __len__(self) -> int:
        return len(self._packed)

    def score_of(self, player_id: str) -> float | None:
        """The player's packed score; None off the board."""
        slot = int(self._players.find(_encoded([player_id]))[0])
        score = float(self._players.scores[slot]) if slot >= 0 else float("nan")
        return None if score != score else score

    def reset(self, entries: Iterable[tuple[str, float]]) -> None:
        """Everything replaced by `entries` (player id, packed score; the last of a
        player counts). Entries in Redis's order (ZREVRANGE, as a copy reads the
        board) need no sort."""
        pairs = list(entries)
        ids = _encoded([pid for pid, _ in pairs], strict=True)
        scores = _finite(np.array([score for _, score in pairs], dtype=np.float64))
        # Room for an eighth more players: the first joins after a reset copy nothing.
        players = PlayerTable(len(ids) + len(ids) // 8 + 1024)
        slots = players.add(ids)
        if (slots != np.arange(len(slots))).any():  # a player repeated: the last counts
            slots, last = np.unique(slots[::-1], return_index=True)
            scores = scores[::-1][last]
        players.scores[slots] = scores
        order = _ascending(scores, slots, players.ids)
        self._players = players
        self._packed = scores[order]
        self._slots = slots[order].astype(np.int32)

    def apply(self, changes: Sequence[tuple[str, float | None]]) -> None:
        """Absolute new packed scores (None: the player left the board); a player
        not on it yet is added. The last change of a player in the batch counts."""
        if not changes:
            return
        player_ids, values = zip(*changes, strict=True)
        new = np.array(values, dtype=np.float64)  # None -> NaN
        if np.count_nonzero(np.isnan(new)) != values.count(None) or np.isinf(new).any():
            raise ValueError("packed scores are finite numbers")
        ids = _encoded(player_ids, strict=True)
        players = self._players
        slots = players.find(ids)
        unknown = slots < 0
        joining = unknown & ~np.isnan(new)  # one never seen who leaves changes nothing
        if joining.any():
            players.add(ids[joining])
            slots[unknown] = players.find(ids[unknown])
        # The last change of each player: the first of each slot in the reversed batch.
        slots, last = np.unique(slots[::-1], return_index=True)
        new = new[::-1][last]
        if slots[0] < 0:
            slots, new = slots[1:], new[1:]
        old = players.scores[slots]
        moved = (old != new) & ~(np.isnan(old) & np.isnan(new))
        slots, old, new = slots[moved], old[moved], new[moved]
        if not slots.size:
            return
        leaving = ~np.isnan(old)
        gone = np.sort(self._find(old[leaving], slots[leaving], present=True))
        coming = ~np.isnan(new)
        scores, entering = new[coming], slots[coming]
        order = _ascending(scores, entering, players.ids)
        scores, entering = scores[order], entering[order]
        at = self._find(scores, entering, present=False)
        players.scores[slots] = new
        self._rebuild(gone, at, scores, entering)

    def places(self, player_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
        """Player -> (rank, points) of those of `player_ids` on the board; rank as
        ZREVRANK + 1, points as layout.points_of."""
        if not player_ids or not len(self._packed):
            return {}
        slots = self._players.find(_encoded(player_ids))
        scores = np.where(slots >= 0, self._players.scores[slots], np.nan)
        on = ~np.isnan(scores)
        found: Iterable[str] = player_ids
        if not on.all():
            found = compress(player_ids, on.tolist())
            scores, slots = scores[on], slots[on]
        ranks = len(self._packed) - self._find(scores, slots, present=True)
        points = np.ceil(scores / SCALE).astype(np.int64)  # layout.points_of, exactly
        return dict(zip(found, zip(ranks.tolist(), points.tolist(), strict=True), strict=True))

    def _find(self, scores: Floats, slots: Ints, *, present: bool) -> Ints:
        """Each (score, slot's id)'s index on the board: where it is when `present`,
        else where it would go (the number of entries ranked below it)."""
        # Searches in ascending order share the top of the search in the cache.
        order = np.argsort(scores)
        sorted_scores = scores[order]
        packed = self._packed
        lo = np.searchsorted(packed, sorted_scores, side="left")
        if len(packed):
            # A score no other entry has is its own place; tied ones are ordered by id.
            # Tied: the next entry has the same score (present) or the one it would
            # go before does (absent).
            beside = np.minimum(lo + 1 if present else lo, len(packed) - 1)
            tied = np.flatnonzero(packed[beside] == sorted_scores)
            if present:
                tied = tied[beside[tied] > lo[tied]]  # the last entry is no neighbour
            if tied.size:
                hi = np.searchsorted(packed, sorted_scores[tied], side="right")
                targets = self._players.ids[slots[order[tied]]]
                lo[tied] = self._first_id_not_below(lo[tied], hi, targets)
        found = np.empty(len(scores), dtype=np.int64)
        found[order] = lo
        return found

    def _first_id_not_below(self, lo: Ints, hi: Ints, targets: Ids) -> Ints:
        """Per run board[lo:hi) of equal scores (ascending ids), the first index
        whose id is not below the target: a binary search over all runs at once."""
        ids, last = self._players.ids, len(self._slots) - 1
        while (searching := lo < hi).any():
            mid = (lo + hi) >> 1
            below = ids[self._slots[np.minimum(mid, last)]] < targets
            lo = np.where(searching & below, mid + 1, lo)
            hi = np.where(searching & ~below, mid, hi)
        return lo

    def _rebuild(self, gone: Ints, at: Ints, scores: Floats, slots: Ints) -> None:
        """The board without the entries at `gone` (ascending indexes) and with the
        sorted new entries (scores, slots) placed before the old indexes `at`."""
        packed, board_slots = self._packed, self._slots
        if gone.size:
            keep = np.ones(len(packed), dtype=bool)
            keep[gone] = False
            packed, board_slots = packed[keep], board_slots[keep]
            at = at - np.searchsorted(gone, at)  # gone entries below each place
        if scores.size:
            into = at + np.arange(len(scores))  # each after the new entries below it
            rest = np.ones(len(packed) + len(scores), dtype=bool)
            rest[into] = False
            packed, board_slots = (
                _merged(packed, rest, into, scores),
                _merged(board_slots, rest, into, slots),
            )
        self._packed, self._slots = packed, board_slots


def _merged(
    kept: npt.NDArray[Item], rest: Flags, into: Ints, new: npt.NDArray[Any]
) -> npt.NDArray[Item]:
    """`kept` at the places `rest`, `new` at `into`."""
    merged = np.empty_like(kept, shape=len(rest))
    merged[into] = new
    merged[rest] = kept
    return merged


def _finite(scores: Floats) -> Floats:
    if not np.isfinite(scores).all():
        raise ValueError("packed scores are finite numbers")
    return scores


def _encoded(player_ids: Sequence[str], *, strict: bool = False) -> Ids:
    """The ids as fixed-width bytes, whose byte order is Redis's member order. Bytes
    would cut a longer id and drop a trailing NUL, so such an id, or one not ASCII,
    is refused (strict) or made one no player has (b"\\xff"...)."""
    lengths = np.fromiter(map(len, player_ids), dtype=np.int64, count=len(player_ids))
    try:
        ids = np.array(player_ids, dtype=ID_TYPE)
        bad = (lengths > ID_BYTES) | (np.strings.str_len(ids) != lengths)
    except UnicodeEncodeError:
        ascii_ids = [pid if pid.isascii() else "" for pid in player_ids]
        ids = np.array(ascii_ids, dtype=ID_TYPE)
        bad = (lengths > ID_BYTES) | (np.strings.str_len(ids) != lengths)
    if bad.any():
        if strict:
            pid = player_ids[int(np.flatnonzero(bad)[0])]
            raise ValueError(f"{pid[:40]!r} is not a player id (up to {ID_BYTES} ASCII characters)")
        ids[bad] = NO_PLAYER
    return ids


def _ascending(scores: Floats, slots: Ints, ids: Ids) -> Ints:
    """The order of entries (score, slot) ascending by score and then id, the ids
    by slot. Entries as Redis lists them (a board read whole) need no sort; only
    entries that share a score are sorted by id."""
    n = len(scores)
    if _is_descending(scores, slots, ids):
        return np.arange(n - 1, -1, -1, dtype=np.int64)
    order = np.argsort(scores, kind="stable")
    ordered = scores[order]
    tie = np.flatnonzero(ordered[1:] == ordered[:-1])
    if tie.size:
        runs = np.union1d(tie, tie + 1)  # the places of tied entries, in score order
        tied = order[runs]
        order[runs] = tied[np.lexsort((ids[slots[tied]], scores[tied]))]
    return order


def _is_descending(scores: Floats, slots: Ints, ids: Ids) -> bool:
    """Whether entries are in Redis's order: scores down, ties by id down."""
    if not (scores[:-1] >= scores[1:]).all():
        return False
    tie = np.flatnonzero(scores[:-1] == scores[1:])
    return bool((ids[slots[tie]] > ids[slots[tie + 1]]).all())
