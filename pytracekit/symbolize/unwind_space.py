"""Room in the in-kernel unwinder's row array (`unwind_rows`, ptk_unwind.h).

Modules' tables are contiguous runs of rows. `RowSpace` hands out runs
first-fit from a sorted list of free extents and merges a returned run with
its free neighbours, so the rows of modules no process maps any more can be
reused by the modules of processes that start later (unwinder.py evicts
them, least recently used first, when a new table does not fit).
"""
from __future__ import annotations

import bisect


class RowSpace:
    """Free extents of an array of `capacity` rows, as (start, length)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.starts: list[int] = [0] if capacity else []
        self.lengths: list[int] = [capacity] if capacity else []

    @property
    def free(self) -> int:
        return sum(self.lengths)

    def largest(self) -> int:
        return max(self.lengths, default=0)

    def take(self, n: int) -> int | None:
        """The first row of a free run of n rows (now in use), or None."""
        if n <= 0:
            return None
        for i, length in enumerate(self.lengths):
            if length >= n:
                start = self.starts[i]
                if length == n:
                    del self.starts[i], self.lengths[i]
                else:
                    self.starts[i] += n
                    self.lengths[i] -= n
                return start
        return None

    def give(self, start: int, n: int) -> None:
        """Rows [start, start + n) are free again (merged with free neighbours)."""
        if n <= 0:
            return
        i = bisect.bisect_left(self.starts, start)
        if i > 0 and self.starts[i - 1] + self.lengths[i - 1] > start or \
                i < len(self.starts) and start + n > self.starts[i]:
            raise ValueError(f"rows {start}+{n} are already free")
        if i > 0 and self.starts[i - 1] + self.lengths[i - 1] == start:
            i -= 1
            self.lengths[i] += n
        else:
            self.starts.insert(i, start)
            self.lengths.insert(i, n)
        if i + 1 < len(self.starts) and self.starts[i] + self.lengths[i] == self.starts[i + 1]:
            self.lengths[i] += self.lengths.pop(i + 1)
            del self.starts[i + 1]
