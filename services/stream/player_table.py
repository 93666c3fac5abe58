"""The players a board copy (local_board.py) has seen, by slot: each one's id as
fixed-width bytes and packed score, and an index from id to slot.

The index is open addressing (linear probing) over numpy arrays, so that a batch
of ids finds its slots in a few vectorized gathers: with a dict, each id costs
~500 ns of cache misses in a million-entry table, one after the other, which was
6-13 ms of a 12,500-change snapshot (benchmarks/own_ranks.py).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

# Player ids are 1 to 32 ASCII letters and digits (services/ids.py).
ID_BYTES = 32
ID_TYPE = np.dtype(f"S{ID_BYTES}")
# The index of ids is at most half full: probe runs stay a few places long.
MOST_FULL = 0.5

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Ids = npt.NDArray[np.bytes_]
Slots = npt.NDArray[np.int32]


class PlayerTable:
    """The players seen since the last reset, by slot: id bytes and packed score
    (NaN off the board; one who leaves keeps the slot). Ids find their slots
    through an open-addressing index (linear probing) of numpy arrays, so a batch
    of ids is a few gathers: with a dict, each id costs ~500 ns of cache misses
    in a million-entry table, one after the other."""

    def __init__(self, room: int) -> None:
        self.ids: Ids = np.zeros(room, dtype=ID_TYPE)
        self.scores: Floats = np.full(room, np.nan)
        self.count = 0
        self._index: Slots = np.full(_index_size(room), -1, dtype=np.int32)

    def find(self, ids: Ids) -> Ints:
        """Each id's slot; -1 for one not in the table."""
        found = np.full(len(ids), -1, dtype=np.int64)
        todo = np.arange(len(ids))
        mask = len(self._index) - 1
        at = _hashes(ids) & mask
        while todo.size:
            slots = self._index[at]
            held = slots >= 0
            same = held.copy()
            same[held] = self.ids[slots[held]] == ids[todo[held]]
            found[todo[same]] = slots[same]
            further = held & ~same
            todo, at = todo[further], (at[further] + 1) & mask
        return found

    def add(self, ids: Ids) -> Ints:
        """Slots for ids not in the table; an id repeated gets one slot for all."""
        start, end = self.count, self.count + len(ids)
        if end > len(self.ids):  # grows by a quarter at least: few copies as players join
            room = max(end, len(self.ids) * 5 // 4 + 1024)
            self.ids = np.concatenate([self.ids, np.zeros(room - len(self.ids), ID_TYPE)])
            self.scores = np.concatenate([self.scores, np.full(room - len(self.scores), np.nan)])
        if end > len(self._index) * MOST_FULL:
            held = self._index[self._index >= 0].astype(np.int64)
            self._index = np.full(_index_size(len(self.ids)), -1, dtype=np.int32)
            self._place(held)
        self.ids[start:end] = ids
        self.count = end
        return self._place(np.arange(start, end, dtype=np.int64))

    def _place(self, slots: Ints) -> Ints:
        """Puts slots into the index; one whose id is there already (a repeat in
        the batch) stays out, and the slot it found stands for it."""
        placed = slots.copy()
        todo = np.arange(len(slots))
        mask = len(self._index) - 1
        at = _hashes(self.ids[slots]) & mask
        while todo.size:
            mine = slots[todo]
            free = self._index[at] < 0
            self._index[at[free]] = mine[free]  # several may claim a place: one wins
            holder = self._index[at]
            won = holder == mine
            same = ~won & (self.ids[holder] == self.ids[mine])
            placed[todo[same]] = holder[same]
            further = ~won & ~same
            todo, at = todo[further], (at[further] + 1) & mask
        return placed


def _index_size(room: int) -> int:
    return 1 << max(10, int(room / MOST_FULL) - 1).bit_length()


def _hashes(ids: Ids) -> Ints:
    """A well-mixed 63-bit hash of each id's bytes (splitmix64 over its 4 words)."""
    words = np.ascontiguousarray(ids).view(np.uint64).reshape(len(ids), ID_BYTES // 8)
    h = np.full(len(ids), 0x9E3779B97F4A7C15, dtype=np.uint64)
    for k in range(ID_BYTES // 8):
        h ^= words[:, k]
        h ^= h >> np.uint64(30)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(27)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
    return (h >> np.uint64(1)).astype(np.int64)
