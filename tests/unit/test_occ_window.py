"""The committer's recent-write window: OCC validation without storage."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncline.txn import Conflict, Interval, ReadSet, WriteWindow, sorted_keys_by_index


def read_set(*intervals: tuple[int, bytes, bytes | None]) -> ReadSet:
    reads = ReadSet()
    for index_id, start, end in intervals:
        reads.add(index_id, Interval(start, end))
    return reads


def keys(*pairs: tuple[int, bytes]) -> dict[int, list[bytes]]:
    return sorted_keys_by_index(pairs)


# -- check ----------------------------------------------------------------------


def test_write_after_snapshot_inside_read_interval_conflicts() -> None:
    window = WriteWindow(0)
    window.add(5, keys((1, b"c")))
    conflict = window.check(4, read_set((1, b"a", b"d")))
    assert isinstance(conflict, Conflict)
    assert conflict.conflicting_ts == 5
    assert "concurrent commit" in conflict.reason


def test_write_at_or_before_snapshot_does_not_conflict() -> None:
    window = WriteWindow(0)
    window.add(5, keys((1, b"c")))
    window.add(6, keys((1, b"x")))
    reads = read_set((1, b"a", b"d"))
    assert window.check(5, reads) is None
    assert window.check(6, reads) is None


def test_write_outside_read_interval_does_not_conflict() -> None:
    window = WriteWindow(0)
    window.add(5, keys((1, b"d"), (1, b"a")))
    reads = read_set((1, b"b", b"d"))  # end is exclusive: b"d" is not read
    assert window.check(0, reads) is None


def test_same_key_in_another_index_does_not_conflict() -> None:
    window = WriteWindow(0)
    window.add(5, keys((2, b"c")))
    assert window.check(0, read_set((1, b"a", b"d"))) is None


def test_conflict_reports_the_newest_conflicting_commit() -> None:
    window = WriteWindow(0)
    window.add(5, keys((1, b"b")))
    window.add(6, keys((1, b"z")))
    window.add(7, keys((1, b"c")))
    conflict = window.check(4, read_set((1, b"a", b"d")))
    assert conflict is not None and conflict.conflicting_ts == 7
    conflict = window.check(6, read_set((1, b"a", b"d")))
    assert conflict is not None and conflict.conflicting_ts == 7


def test_empty_read_set_never_conflicts() -> None:
    window = WriteWindow(0)
    window.add(5, keys((1, b"a")))
    assert window.check(0, ReadSet()) is None


# -- floor and trim ------------------------------------------------------------


def test_snapshot_older_than_floor_is_refused() -> None:
    window = WriteWindow(10)
    assert window.floor_ts == 10
    refused = window.check(9, read_set((1, b"a", b"b")))
    assert refused is not None
    assert refused.conflicting_ts is None
    assert "older than the committer's window (10)" in refused.reason
    assert window.check(10, read_set((1, b"a", b"b"))) is None


def test_a_commit_that_read_nothing_passes_at_any_snapshot() -> None:
    # A write-only mutation never opens a snapshot: nothing it read can be stale.
    window = WriteWindow(10)
    window.add(11, keys((1, b"a")))
    assert window.check(0, ReadSet()) is None


def test_trim_before_forgets_entries_and_raises_floor() -> None:
    window = WriteWindow(0)
    for ts in (5, 6, 7):
        window.add(ts, keys((1, bytes([ts]))))
    window.trim_before(6)
    assert len(window) == 1
    assert window.floor_ts == 6
    refused = window.check(5, read_set((1, b"x", b"y")))
    assert refused is not None and refused.conflicting_ts is None
    # At the floor the remaining entry is still checked.
    conflict = window.check(6, read_set((1, b"", None)))
    assert conflict is not None and conflict.conflicting_ts == 7
    assert window.check(7, read_set((1, b"", None))) is None


def test_trim_between_entries_sets_floor_to_last_forgotten_ts() -> None:
    window = WriteWindow(0)
    window.add(5, keys((1, b"a")))
    window.add(9, keys((1, b"b")))
    window.trim_before(8)
    # Commit 5 is gone; snapshots 5..8 are still validatable against commit 9.
    assert window.floor_ts == 5
    assert window.check(5, read_set((1, b"a", b"a\x00"))) is None
    conflict = window.check(5, read_set((1, b"b", b"b\x00")))
    assert conflict is not None and conflict.conflicting_ts == 9


def test_trim_with_nothing_old_keeps_floor() -> None:
    window = WriteWindow(3)
    window.add(5, keys((1, b"a")))
    window.trim_before(4)
    assert window.floor_ts == 3
    assert len(window) == 1


def test_max_entries_evicts_oldest_and_raises_floor() -> None:
    window = WriteWindow(0, max_entries=2)
    window.add(1, keys((1, b"a")))
    window.add(2, keys((1, b"b")))
    window.add(3, keys((1, b"c")))
    assert len(window) == 2
    assert window.floor_ts == 1
    assert window.check(0, read_set((1, b"x", b"y"))) is not None
    conflict = window.check(1, read_set((1, b"b", b"c")))
    assert conflict is not None and conflict.conflicting_ts == 2


# -- remove_after and add ----------------------------------------------------------


def test_remove_after_drops_only_newer_entries() -> None:
    window = WriteWindow(0)
    for ts in (5, 6, 7):
        window.add(ts, keys((1, b"k")))
    window.remove_after(5)
    assert len(window) == 1
    assert window.floor_ts == 0
    conflict = window.check(4, read_set((1, b"k", b"k\x00")))
    assert conflict is not None and conflict.conflicting_ts == 5
    assert window.check(5, read_set((1, b"k", b"k\x00"))) is None
    # The removed ts may be used again.
    window.add(6, keys((1, b"z")))
    assert len(window) == 2


@pytest.mark.parametrize("ts", [4, 5])
def test_add_with_non_increasing_ts_raises(ts: int) -> None:
    window = WriteWindow(0)
    window.add(5, keys((1, b"a")))
    with pytest.raises(ValueError, match="must increase"):
        window.add(ts, keys((1, b"b")))
    assert len(window) == 1


# -- model test ------------------------------------------------------------------

small_keys = st.sampled_from([b"", b"a", b"b", b"b\x00", b"c", b"d"])
written_keys = st.lists(st.tuples(st.integers(1, 2), small_keys), min_size=1, max_size=3)
read_intervals = st.lists(
    st.tuples(st.integers(1, 2), small_keys, st.none() | small_keys), max_size=3
)


@dataclass
class Add:
    gap: int
    pairs: list[tuple[int, bytes]]


@dataclass
class Trim:
    back: int


@dataclass
class RemoveAfter:
    back: int


@dataclass
class Check:
    back: int
    intervals: list[tuple[int, bytes, bytes | None]]


operations = st.lists(
    st.one_of(
        st.builds(Add, gap=st.integers(1, 3), pairs=written_keys),
        st.builds(Trim, back=st.integers(0, 8)),
        st.builds(RemoveAfter, back=st.integers(0, 8)),
        st.builds(Check, back=st.integers(0, 12), intervals=read_intervals),
    ),
    max_size=30,
)


@settings(max_examples=300)
@given(ops=operations, max_entries=st.integers(1, 6))
def test_window_matches_naive_model(ops: list[object], max_entries: int) -> None:
    """Against a list of every surviving (ts, keys): exact answers above the floor."""
    window = WriteWindow(0, max_entries=max_entries)
    history: list[tuple[int, list[tuple[int, bytes]]]] = []  # every live commit, ever
    floor = 0
    last_ts = 0
    for op in ops:
        if isinstance(op, Add):
            last_ts = (history[-1][0] if history else last_ts) + op.gap
            window.add(last_ts, sorted_keys_by_index(op.pairs))
            history.append((last_ts, op.pairs))
            in_window = [ts for ts, _ in history if ts > floor]
            if len(in_window) > max_entries:
                floor = in_window[-max_entries - 1]
        elif isinstance(op, Trim):
            cut = last_ts - op.back
            window.trim_before(cut)
            forgotten = [ts for ts, _ in history if floor < ts <= cut]
            if forgotten:
                floor = forgotten[-1]
        elif isinstance(op, RemoveAfter):
            cut = last_ts - op.back
            window.remove_after(max(cut, floor))
            history = [(ts, pairs) for ts, pairs in history if ts <= max(cut, floor)]
        else:
            assert isinstance(op, Check)
            snapshot = last_ts - op.back
            result = window.check(snapshot, read_set(*op.intervals))
            assert window.floor_ts == floor
            if not op.intervals:
                assert result is None  # read nothing: nothing can conflict
                continue
            if snapshot < floor:
                assert result is not None and result.conflicting_ts is None
                continue
            conflicting = [
                ts
                for ts, pairs in history
                if ts > snapshot
                and any(
                    w_index == r_index and start <= key and (end is None or key < end)
                    for w_index, key in pairs
                    for r_index, start, end in op.intervals
                )
            ]
            if conflicting:
                assert result is not None and result.conflicting_ts == max(conflicting)
            else:
                assert result is None
