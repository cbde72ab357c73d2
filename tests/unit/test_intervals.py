"""Key intervals and read sets: the pure half of conflict detection and invalidation."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from syncline.txn import Interval, ReadSet, sorted_keys_by_index
from syncline.values import encode_key, key_successor, prefix_end

# Short keys over a tiny alphabet collide with interval bounds often, which is
# where off-by-one mistakes live (start inclusive, end exclusive, successor).
keys = st.binary(max_size=3).map(lambda b: bytes(x % 4 for x in b))


# -- Interval ---------------------------------------------------------------


def test_contains_is_half_open() -> None:
    interval = Interval(b"b", b"d")
    assert [interval.contains(k) for k in (b"a", b"b", b"bz", b"c", b"d", b"da")] == [
        False,
        True,
        True,
        True,
        False,
        False,
    ]


def test_unbounded_end_contains_everything_from_start() -> None:
    interval = Interval(b"m", None)
    assert not interval.contains(b"l\xff\xff")
    assert interval.contains(b"m")
    assert interval.contains(b"\xff" * 10)


def test_empty_start_contains_the_empty_key() -> None:
    assert Interval(b"", None).contains(b"")
    assert Interval(b"", b"\x00").contains(b"")
    assert not Interval(b"", b"").contains(b"")


def test_point_interval_holds_exactly_one_key() -> None:
    key = encode_key("abc")
    point = Interval(key, key_successor(key))
    assert point.contains(key)
    assert not point.contains(key_successor(key))
    assert not point.contains(key + b"\x00\x00")
    assert not point.contains(key[:-1])
    assert not point.is_empty()


def test_prefix_interval_holds_keys_extending_the_prefix() -> None:
    prefix = encode_key("room-1")
    interval = Interval(prefix, prefix_end(prefix))
    assert interval.contains(prefix + encode_key(0.0))
    assert interval.contains(prefix + encode_key("zzz"))
    assert not interval.contains(encode_key("room-2"))
    assert not interval.contains(encode_key("room-0") + encode_key(1.0))


def test_is_empty() -> None:
    assert Interval(b"a", b"a").is_empty()
    assert Interval(b"b", b"a").is_empty()
    assert not Interval(b"a", b"a\x00").is_empty()
    assert not Interval(b"a", None).is_empty()
    assert not Interval(b"", None).is_empty()


def test_empty_intervals_contain_nothing() -> None:
    for interval in (Interval(b"a", b"a"), Interval(b"b", b"a")):
        assert not interval.contains(b"a")
        assert not interval.contains(b"b")
        assert not interval.any_key_in([b"", b"a", b"b", b"c"])


def test_any_key_in_boundaries() -> None:
    interval = Interval(b"b", b"d")
    assert not interval.any_key_in([])
    assert not interval.any_key_in([b"a"])
    assert not interval.any_key_in([b"a", b"d", b"e"])
    assert interval.any_key_in([b"a", b"b"])
    assert interval.any_key_in([b"c\xff"])
    assert interval.any_key_in([b"a", b"c", b"z"])
    assert not interval.any_key_in([b"d"])


def test_any_key_in_unbounded() -> None:
    interval = Interval(b"k", None)
    assert not interval.any_key_in([b"a", b"j\xff"])
    assert interval.any_key_in([b"a", b"k"])
    assert interval.any_key_in([b"zzz"])


def test_interval_can_be_widened_after_it_was_recorded() -> None:
    # A scan records its interval once and moves the end as it reads on; the
    # read set must see the widened interval, not a copy.
    reads = ReadSet()
    recorded = reads.add(1, Interval(b"a", b"b"))
    assert not reads.overlaps({1: [b"c"]})
    recorded.end = b"d"
    assert reads.overlaps({1: [b"c"]})


@given(start=keys, end=st.none() | keys, key=keys)
def test_contains_matches_definition(start: bytes, end: bytes | None, key: bytes) -> None:
    expected = start <= key and (end is None or key < end)
    assert Interval(start, end).contains(key) is expected


@given(start=keys, end=st.none() | keys, written=st.lists(keys, max_size=8))
def test_any_key_in_matches_contains(start: bytes, end: bytes | None, written: list[bytes]) -> None:
    interval = Interval(start, end)
    ordered = sorted(set(written))
    assert interval.any_key_in(ordered) is any(interval.contains(k) for k in ordered)


@given(key=keys, other=keys)
def test_successor_interval_is_a_point(key: bytes, other: bytes) -> None:
    assert Interval(key, key_successor(key)).contains(other) is (other == key)


# -- ReadSet ------------------------------------------------------------------


def test_read_set_counts_every_added_interval_but_yields_only_non_empty() -> None:
    reads = ReadSet()
    reads.add(1, Interval(b"a", b"c"))
    reads.add(1, Interval(b"x", b"x"))
    reads.add(2, Interval(b"", None))
    assert len(reads) == 3
    assert list(reads.items()) == [(1, Interval(b"a", b"c")), (2, Interval(b"", None))]


def test_overlaps_only_within_the_same_index() -> None:
    reads = ReadSet()
    reads.add(1, Interval(b"a", b"c"))
    assert not reads.overlaps({2: [b"b"]})
    assert reads.overlaps({1: [b"b"]})
    assert reads.overlaps({2: [b"b"], 1: [b"a"]})


def test_overlaps_with_nothing_written_or_nothing_read() -> None:
    reads = ReadSet()
    assert not reads.overlaps({1: [b"a"]})
    reads.add(1, Interval(b"", None))
    assert not reads.overlaps({})
    assert not reads.overlaps({1: []})


def test_overlaps_any_of_several_intervals() -> None:
    reads = ReadSet()
    reads.add(1, Interval(b"a", b"b"))
    reads.add(1, Interval(b"m", b"n"))
    assert not reads.overlaps({1: [b"b", b"c", b"n"]})
    assert reads.overlaps({1: [b"b", b"m\x05"]})


# -- sorted_keys_by_index ------------------------------------------------------


def test_sorted_keys_by_index_groups_sorts_and_deduplicates() -> None:
    pairs = [(2, b"b"), (1, b"z"), (2, b"a"), (1, b"a"), (2, b"b"), (1, b"z")]
    assert sorted_keys_by_index(pairs) == {1: [b"a", b"z"], 2: [b"a", b"b"]}


def test_sorted_keys_by_index_of_nothing() -> None:
    assert sorted_keys_by_index([]) == {}


# -- the property ----------------------------------------------------------------

index_ids = st.integers(1, 3)
intervals = st.builds(Interval, start=keys, end=st.none() | keys)


@given(
    read=st.lists(st.tuples(index_ids, intervals), max_size=6),
    written=st.lists(st.tuples(index_ids, keys), max_size=10),
)
def test_overlaps_equals_brute_force(
    read: list[tuple[int, Interval]], written: list[tuple[int, bytes]]
) -> None:
    reads = ReadSet()
    for index_id, interval in read:
        reads.add(index_id, interval)
    brute = any(
        read_index == write_index
        and interval.start <= key
        and (interval.end is None or key < interval.end)
        for read_index, interval in read
        for write_index, key in written
    )
    assert reads.overlaps(sorted_keys_by_index(written)) is brute
