"""The committer's recent-write window: the pure half of OCC validation.

A commit with snapshot ts S conflicts if a commit with ts > S wrote a key
inside one of its read intervals. The window keeps the written keys of recent
commits; a snapshot older than the window cannot be validated and is refused
as a (retryable) conflict, so the window's memory stays bounded.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from syncline.txn._intervals import ReadSet


@dataclass(frozen=True)
class Conflict:
    """Why a commit cannot be applied at its snapshot."""

    reason: str
    conflicting_ts: int | None


@dataclass(frozen=True)
class _WindowEntry:
    ts: int
    keys: Mapping[int, Sequence[bytes]]


class WriteWindow:
    """Written keys of commits after ``floor_ts``, oldest first."""

    def __init__(self, floor_ts: int, *, max_entries: int = 100_000) -> None:
        self._entries: deque[_WindowEntry] = deque()
        self._floor_ts = floor_ts
        self._max_entries = max_entries

    @property
    def floor_ts(self) -> int:
        """Snapshots older than this cannot be validated."""
        return self._floor_ts

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, ts: int, keys: Mapping[int, Sequence[bytes]]) -> None:
        if self._entries and ts <= self._entries[-1].ts:
            raise ValueError(f"window ts must increase: {ts} after {self._entries[-1].ts}")
        self._entries.append(_WindowEntry(ts, keys))
        while len(self._entries) > self._max_entries:
            self._floor_ts = self._entries.popleft().ts

    def remove_after(self, ts: int) -> None:
        """Drop entries above ts (a batch that failed to persist)."""
        while self._entries and self._entries[-1].ts > ts:
            self._entries.pop()

    def trim_before(self, ts: int) -> None:
        """Forget commits at or below ts; snapshots older than ts are then refused."""
        while self._entries and self._entries[0].ts <= ts:
            self._floor_ts = self._entries.popleft().ts

    def check(self, snapshot_ts: int, read_set: ReadSet) -> Conflict | None:
        if len(read_set) == 0:
            # Read nothing, so nothing written since can conflict, however old the
            # snapshot (a write-only mutation never opens one).
            return None
        if snapshot_ts < self._floor_ts:
            return Conflict(
                f"snapshot {snapshot_ts} is older than the committer's window ({self._floor_ts})",
                None,
            )
        # Newest first: a conflict is most likely with a recent commit.
        for entry in reversed(self._entries):
            if entry.ts <= snapshot_ts:
                break
            if read_set.overlaps(entry.keys):
                return Conflict("a concurrent commit wrote data this transaction read", entry.ts)
        return None
