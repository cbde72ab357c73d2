"""Index key encoding: byte order equals Convex's value order, field by field."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncline._errors import InvalidValueError
from syncline.values import (
    INT64_MAX,
    INT64_MIN,
    MISSING,
    compare_values,
    encode_index_key,
    encode_key,
    key_successor,
    prefix_end,
)

# Characters and bytes around the escape (0x00, 0x01) and the bound (0xFF) are
# the interesting ones, so they are drawn far more often than chance would.
tricky_text = st.text(
    alphabet=st.sampled_from("\x00\x01\x02a~\x7f\xff\u0100\U0001f600"), max_size=5
)
any_text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=5)
tricky_bytes = st.lists(st.sampled_from([0, 1, 2, 0x61, 0xFE, 0xFF]), max_size=5).map(bytes)
field_names = st.sampled_from(["", "a", "b", "a ", "~", "ab", " "])
scalars = (
    st.none()
    | st.booleans()
    | st.integers(INT64_MIN, INT64_MAX)
    | st.integers(-3, 3)
    | st.floats()
    | st.sampled_from([0.0, -0.0, math.inf, -math.inf, math.nan, 1.0, -1.0])
    | tricky_text
    | any_text
    | tricky_bytes
    | st.binary(max_size=4)
)
convex_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(field_names, children, max_size=3)
    ),
    max_leaves=12,
)
index_fields = st.just(MISSING) | convex_values


# --- a reference order, written from the definition rather than from the encoding ----

_RANK = ["missing", "null", "int64", "float64", "boolean", "string", "bytes", "array", "object"]


def _rank(value: object) -> int:
    if value is MISSING:
        kind = "missing"
    elif value is None:
        kind = "null"
    elif isinstance(value, bool):
        kind = "boolean"
    elif isinstance(value, int):
        kind = "int64"
    elif isinstance(value, float):
        kind = "float64"
    elif isinstance(value, str):
        kind = "string"
    elif isinstance(value, bytes):
        kind = "bytes"
    elif isinstance(value, list):
        kind = "array"
    else:
        kind = "object"
    return _RANK.index(kind)


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def _float_order(x: float) -> tuple[int, float, float]:
    # NaN above everything; equal numbers ordered by sign so that -0.0 < 0.0.
    if math.isnan(x):
        return (1, 0.0, 0.0)
    return (0, x, math.copysign(1.0, x))


def _cmp_plain(a: Any, b: Any) -> int:
    return int(a > b) - int(a < b)


def reference_compare(a: Any, b: Any) -> int:
    """-1/0/1 by Convex's documented order of values."""
    rank_a, rank_b = _rank(a), _rank(b)
    if rank_a != rank_b:
        return _sign(rank_a - rank_b)
    if isinstance(a, float):
        return _cmp_plain(_float_order(a), _float_order(b))
    if isinstance(a, list):
        for x, y in zip(a, b, strict=False):
            if (c := reference_compare(x, y)) != 0:
                return c
        return _sign(len(a) - len(b))
    if isinstance(a, dict):
        items_a, items_b = sorted(a.items()), sorted(b.items())
        for (key_a, value_a), (key_b, value_b) in zip(items_a, items_b, strict=False):
            if (c := _cmp_plain(key_a, key_b) or reference_compare(value_a, value_b)) != 0:
                return c
        return _sign(len(items_a) - len(items_b))
    if a is MISSING or a is None:
        return 0
    # str compares by code point, bool/int/bytes by value: Convex's order within each.
    return _cmp_plain(a, b)


def reference_compare_tuples(a: list[Any], b: list[Any]) -> int:
    for x, y in zip(a, b, strict=True):
        if (c := reference_compare(x, y)) != 0:
            return c
    return 0


# --- properties ------------------------------------------------------------------------


@given(index_fields, index_fields)
def test_byte_order_is_value_order(a: Any, b: Any) -> None:
    assert _cmp_plain(encode_key(a), encode_key(b)) == reference_compare(a, b)
    assert compare_values(a, b) == reference_compare(a, b)


@given(index_fields, index_fields)
def test_encodings_are_prefix_free(a: Any, b: Any) -> None:
    key_a, key_b = encode_key(a), encode_key(b)
    if key_a != key_b:
        assert not key_b.startswith(key_a)
        assert not key_a.startswith(key_b)
    else:
        assert reference_compare(a, b) == 0


# Independent draws rarely make one value a prefix of the other, the case where a
# careless escape or terminator breaks; these draw such pairs on purpose.
extensions: st.SearchStrategy[tuple[Any, Any]] = (
    st.tuples(tricky_text, tricky_text.filter(bool)).map(lambda p: (p[0], p[0] + p[1]))
    | st.tuples(tricky_bytes, tricky_bytes.filter(bool)).map(lambda p: (p[0], p[0] + p[1]))
    | st.tuples(st.lists(convex_values, max_size=2), convex_values).map(
        lambda p: (p[0], [*p[0], p[1]])
    )
    | st.tuples(st.dictionaries(field_names, convex_values, max_size=2), convex_values).map(
        lambda p: (p[0], {**p[0], "~~": p[1]})
    )
    | st.tuples(tricky_text, st.just("")).map(lambda p: ({}, {p[1]: p[0]}))
)


@given(extensions, index_fields, index_fields)
def test_a_value_is_no_prefix_of_its_extensions(
    pair: tuple[Any, Any], after_short: Any, after_long: Any
) -> None:
    short, long = pair
    assert not encode_key(long).startswith(encode_key(short))
    assert encode_key(short) < encode_key(long)
    # Whatever follows in the next field, the shorter value's key sorts first.
    assert encode_index_key([short, after_short]) < encode_index_key([long, after_long])


@given(index_fields)
def test_encodings_start_with_a_type_tag(value: Any) -> None:
    assert 0x01 <= encode_key(value)[0] <= 0x0F


@given(
    st.integers(1, 3).flatmap(
        lambda n: st.tuples(*[st.lists(index_fields, min_size=n, max_size=n)] * 2)
    )
)
def test_index_keys_compare_field_by_field(pair: tuple[list[Any], list[Any]]) -> None:
    a, b = pair
    assert _cmp_plain(encode_index_key(a), encode_index_key(b)) == reference_compare_tuples(a, b)


@given(index_fields, index_fields, index_fields)
def test_prefix_end_bounds_exactly_the_keys_with_that_first_field(
    first: Any, other_first: Any, rest: Any
) -> None:
    prefix = encode_key(first)
    inside = encode_index_key([first, rest])
    assert prefix <= inside < prefix_end(prefix)
    outside = encode_index_key([other_first, rest])
    if reference_compare(other_first, first) < 0:
        assert outside < prefix
    elif reference_compare(other_first, first) > 0:
        assert outside >= prefix_end(prefix)


@given(index_fields, index_fields)
def test_key_successor_is_the_next_key(a: Any, b: Any) -> None:
    key_a, key_b = encode_key(a), encode_key(b)
    successor = key_successor(key_a)
    assert key_a < successor
    assert key_b <= key_a or key_b >= successor


# --- examples --------------------------------------------------------------------------

ASCENDING: list[object] = [
    MISSING,
    None,
    INT64_MIN,
    -1,
    0,
    1,
    INT64_MAX,
    -math.inf,
    -1.5,
    -5e-324,
    -0.0,
    0.0,
    5e-324,
    2.0,
    math.inf,
    math.nan,
    False,
    True,
    "",
    "\x00",
    "\x00\x00",
    "\x01",
    "\x02",
    "a",
    "a\x00",
    "a\x01",
    "ab",
    "\xff",
    "\U0001f600",
    b"",
    b"\x00",
    b"\x01",
    b"\xff",
    b"\xff\xff",
    [],
    [None],
    [None, None],
    [0],
    ["a"],
    [[]],
    {},
    {"": None},
    {"a": None},
    {"a": 1},
    {"a": 1, "b": None},
    {"a": 2},
    {"b": None},
]


def test_examples_are_in_ascending_order() -> None:
    keys = [encode_key(value) for value in ASCENDING]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)


def test_layout() -> None:
    assert encode_key(MISSING) == b"\x01"
    assert encode_key(None) == b"\x02"
    assert encode_key(0) == b"\x03\x80\x00\x00\x00\x00\x00\x00\x00"
    assert encode_key(-1) == b"\x03\x7f\xff\xff\xff\xff\xff\xff\xff"
    assert encode_key(1.0) == b"\x04\xbf\xf0\x00\x00\x00\x00\x00\x00"
    assert encode_key(-1.0) == b"\x04\x40\x0f\xff\xff\xff\xff\xff\xff"
    assert encode_key(False) == b"\x05\x00"
    assert encode_key(True) == b"\x05\x01"
    assert encode_key("a\x00b\x01") == b"\x06a\x01\x01b\x01\x02\x00"
    assert encode_key(b"") == b"\x07\x00"
    assert encode_key([1.0, None]) == b"\x08" + encode_key(1.0) + b"\x02\x00"
    assert encode_key({"b": None, "a": True}) == b"\x09\x06a\x00\x05\x01\x06b\x00\x02\x00"


def test_every_nan_is_one_key() -> None:
    assert encode_key(math.nan) == encode_key(-math.nan)
    assert compare_values(math.nan, -math.nan) == 0
    assert compare_values(math.inf, -math.nan) == -1


def test_an_index_key_over_a_string_with_a_nul_byte() -> None:
    # ("a", anything) sorts before ("a\x00", anything): no byte of the second field leaks in.
    assert encode_index_key(["a", {"z": 1}]) < encode_index_key(["a\x00", MISSING])
    assert encode_index_key([]) == b""


def test_missing_only_stands_for_a_whole_field() -> None:
    with pytest.raises(InvalidValueError, match=r"^value\[0\]: MISSING"):
        encode_key([MISSING])
    assert repr(MISSING) == "MISSING"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ((1,), "value: tuple is not a supported Convex value"),
        ({"a": [1, {2}]}, r"value.a\[1\]: set is not a supported Convex value"),
        (2**63, "value: integer 9223372036854775808 is outside the int64 range"),
        ({"s": "\udc00"}, "value.s: string contains a lone surrogate"),
        ({1: 1}, "value: object key of type int is not a string"),
    ],
)
def test_non_values_are_rejected(value: object, message: str) -> None:
    with pytest.raises(InvalidValueError, match=f"^{message}"):
        encode_key(value)
