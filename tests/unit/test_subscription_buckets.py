"""Key field boundaries and interval buckets: invalidation must never miss a query."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from syncline.sync._subscriptions import interval_bucket
from syncline.txn import Interval
from syncline.values import encode_index_key, field_boundaries, key_successor, prefix_end

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=6),
    st.binary(max_size=6),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)
keys = st.lists(values, min_size=1, max_size=4)


def test_boundaries_are_the_field_ends() -> None:
    fields = ["k7", 1.5, [1, "a\x00b", {"x": None}], True, b"\x00", None]
    key = encode_index_key(fields)
    ends = field_boundaries(key)
    assert ends == [len(encode_index_key(fields[: i + 1])) for i in range(len(fields))]
    assert field_boundaries(prefix_end(encode_index_key(["k7"]))) == [4]
    assert field_boundaries(b"") == []


@given(keys)
def test_boundaries_of_any_key(fields: list[object]) -> None:
    key = encode_index_key(fields)
    assert field_boundaries(key) == [
        len(encode_index_key(fields[: i + 1])) for i in range(len(fields))
    ]


def test_buckets_of_typical_reads() -> None:
    prefix = encode_index_key(["room-1"])
    assert interval_bucket(Interval(prefix, prefix_end(prefix))) == prefix
    newest = encode_index_key(["room-1", 5.0, "id"])
    assert interval_bucket(Interval(newest, prefix_end(prefix))) == prefix
    assert interval_bucket(Interval(prefix, key_successor(newest))) == prefix
    assert interval_bucket(Interval(b"", None)) == b""
    lo, hi = encode_index_key(["a"]), encode_index_key(["b"])
    assert interval_bucket(Interval(lo, hi)) == b""


@given(keys, keys, keys)
def test_a_key_inside_an_interval_is_found_under_its_bucket(
    a: list[object], b: list[object], k: list[object]
) -> None:
    start, end, key = sorted([encode_index_key(a), encode_index_key(b), encode_index_key(k)])
    for interval in (
        Interval(start, end),
        Interval(start, prefix_end(start)),
        Interval(start, None),
    ):
        if interval.contains(key):
            bucket = interval_bucket(interval)
            assert bucket == b"" or bucket in {key[:e] for e in field_boundaries(key)}
