"""Index key intervals and read sets: what a function read, as byte ranges.

Every read is an interval ``[start, end)`` of keys in one index (``end=None``:
unbounded). A write conflicts with (or invalidates) a read when one of the
written document's old or new index keys falls inside a read interval.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field


@dataclass
class Interval:
    """Half-open byte interval ``[start, end)``; mutable so a scan can grow it."""

    start: bytes
    end: bytes | None

    def contains(self, key: bytes) -> bool:
        return self.start <= key and (self.end is None or key < self.end)

    def is_empty(self) -> bool:
        return self.end is not None and self.end <= self.start

    def any_key_in(self, sorted_keys: Sequence[bytes]) -> bool:
        """True if some key of the sorted sequence lies in this interval."""
        i = bisect.bisect_left(sorted_keys, self.start)
        return i < len(sorted_keys) and (self.end is None or sorted_keys[i] < self.end)


@dataclass
class ReadSet:
    """The intervals a function read, per index id."""

    intervals: dict[int, list[Interval]] = field(default_factory=dict)
    _size: int = 0

    def add(self, index_id: int, interval: Interval) -> Interval:
        """Record an interval; returns it so a scan can widen it as it reads on."""
        self.intervals.setdefault(index_id, []).append(interval)
        self._size += 1
        return interval

    def __len__(self) -> int:
        return self._size

    def items(self) -> Iterator[tuple[int, Interval]]:
        for index_id, intervals in self.intervals.items():
            for interval in intervals:
                if not interval.is_empty():
                    yield index_id, interval

    def overlaps(self, written: Mapping[int, Sequence[bytes]]) -> bool:
        """True if any written key (sorted per index id) falls in a read interval."""
        for index_id, intervals in self.intervals.items():
            keys = written.get(index_id)
            if keys and any(i.any_key_in(keys) for i in intervals):
                return True
        return False


def sorted_keys_by_index(pairs: Iterable[tuple[int, bytes]]) -> dict[int, list[bytes]]:
    """Group ``(index_id, key)`` pairs into sorted, de-duplicated key lists."""
    grouped: dict[int, set[bytes]] = {}
    for index_id, key in pairs:
        grouped.setdefault(index_id, set()).add(key)
    return {index_id: sorted(keys) for index_id, keys in grouped.items()}
