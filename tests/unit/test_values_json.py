"""The value model: JSON encoding (as the official convex client), limits, equality."""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import syncline.values as values_pkg
from syncline._errors import InvalidValueError
from syncline.values import (
    INT64_MAX,
    INT64_MIN,
    MAX_ARRAY_LEN,
    MAX_DEPTH,
    MAX_DOCUMENT_BYTES,
    MAX_FIELD_NAME_LENGTH,
    MAX_OBJECT_FIELDS,
    check_field_name,
    check_value,
    from_json,
    json_dumps_canonical,
    to_json,
    type_name,
    values_equal,
)

field_names = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=6
).filter(lambda name: not name.startswith("$"))
scalars = (
    st.none()
    | st.booleans()
    | st.integers(INT64_MIN, INT64_MAX)
    | st.floats()
    | st.text(alphabet=st.characters(exclude_categories=["Cs"]))
    | st.binary()
)
convex_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(field_names, children, max_size=4)
    ),
    max_leaves=24,
)


def nested_lists(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_all_is_isort_sorted_and_complete() -> None:
    names = values_pkg.__all__

    def isort_key(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert names == sorted(names, key=isort_key)
    assert len(set(names)) == len(names)
    assert all(hasattr(values_pkg, name) for name in names)


# --- to_json -----------------------------------------------------------------------


def test_known_vectors_match_the_convex_client() -> None:
    assert to_json(1) == {"$integer": "AQAAAAAAAAA="}
    assert to_json(float("nan")) == {"$float": "AAAAAAAA+H8="}
    assert to_json(b"\x00") == {"$bytes": "AA=="}


def test_integers_are_eight_bytes_little_endian_twos_complement() -> None:
    assert to_json(0) == {"$integer": "AAAAAAAAAAA="}
    assert to_json(-1) == {"$integer": "//////////8="}
    assert to_json(INT64_MAX) == {"$integer": "/////////38="}
    assert to_json(INT64_MIN) == {"$integer": "AAAAAAAAAIA="}


def test_special_floats_are_tagged_and_ordinary_floats_are_numbers() -> None:
    assert to_json(-0.0) == {"$float": "AAAAAAAAAIA="}
    assert to_json(math.inf) == {"$float": "AAAAAAAA8H8="}
    assert to_json(-math.inf) == {"$float": "AAAAAAAA8P8="}
    encoded = to_json(1.0)
    assert encoded == 1.0 and type(encoded) is float
    assert to_json(0.0) == 0.0
    assert to_json(-2.5) == -2.5


def test_scalars_and_containers() -> None:
    value = {"a": [None, True, False, "x", b"hi", 1.5], "b": {}}
    assert to_json(value) == {
        "a": [None, True, False, "x", {"$bytes": "aGk="}, 1.5],
        "b": {},
    }


def test_bool_is_not_encoded_as_an_integer() -> None:
    assert to_json(True) is True
    assert to_json([False]) == [False]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ((1, 2), "value: tuple is not a supported Convex value (use a list)"),
        ({"a": [0, 1, {3}]}, "value.a[2]: set is not a supported Convex value (use a list)"),
        ({"a": bytearray(b"x")}, "value.a: bytearray is not a supported Convex value (use bytes)"),
        ({"a b": object()}, 'value["a b"]: object is not a supported Convex value'),
        ([2**63], "value[0]: integer 9223372036854775808 is outside the int64 range"),
        ([-(2**63) - 1], "value[0]: integer -9223372036854775809 is outside the int64 range"),
        ({"x": {"$id": 1}}, "value.x: field name '$id' starts with '$', which is reserved"),
        ({1: 2}, "value: object key of type int is not a string"),
    ],
)
def test_to_json_rejects_non_values_naming_the_path(value: object, message: str) -> None:
    with pytest.raises(InvalidValueError) as raised:
        to_json(value)
    assert raised.value.message.startswith(message)


def test_cyclic_value_is_an_invalid_value_not_a_recursion_error() -> None:
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(InvalidValueError, match="is it cyclic"):
        to_json(cyclic)
    with pytest.raises(InvalidValueError, match="nested more than the limit of 16 levels"):
        check_value(cyclic)


# --- field names ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "a", "_id", "a b", "x$", "~!", "a" * MAX_FIELD_NAME_LENGTH])
def test_valid_field_names(name: str) -> None:
    assert check_field_name(name) == name
    assert to_json({name: 1.0}) == {name: 1.0}


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("$a", "starts with '$'"),
        ("a\nb", "contains '\\n' (U+000A)"),
        ("caf\u00e9", "contains 'é' (U+00E9)"),
        ("a\x7f", "(U+007F)"),
        ("a" * (MAX_FIELD_NAME_LENGTH + 1), "1025 characters long, more than the limit of 1024"),
    ],
)
def test_invalid_field_names(name: str, problem: str) -> None:
    with pytest.raises(InvalidValueError) as raised:
        check_field_name(name, "args.doc")
    assert raised.value.message.startswith("args.doc: field name ")
    assert problem in raised.value.message


# --- from_json ---------------------------------------------------------------------


def test_json_numbers_are_always_floats() -> None:
    decoded = from_json(3)
    assert decoded == 3.0 and type(decoded) is float
    assert from_json([1, 2.5]) == [1.0, 2.5]
    assert all(type(item) is float for item in from_json([1, -7]))  # type: ignore[union-attr]


def test_from_json_decodes_tagged_objects() -> None:
    assert from_json({"$integer": "AQAAAAAAAAA="}) == 1
    assert type(from_json({"$integer": "AQAAAAAAAAA="})) is int
    assert from_json({"$integer": "//////////8="}) == -1
    assert from_json({"$bytes": "aGk="}) == b"hi"
    assert from_json({"$bytes": ""}) == b""
    nan = from_json({"$float": "AAAAAAAA+H8="})
    assert isinstance(nan, float) and math.isnan(nan)
    negative_zero = from_json({"$float": "AAAAAAAAAIA="})
    assert negative_zero == 0.0 and math.copysign(1.0, negative_zero) == -1.0
    assert from_json({"a": [{"$integer": "AgAAAAAAAAA="}, None, True, "s"]}) == {
        "a": [2, None, True, "s"]
    }


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"$integer": 1}, "value: $integer must be a base64 string, got int"),
        ({"$integer": "AQ=="}, "value: $integer must encode 8 bytes, got 1"),
        ({"$integer": "not base64!"}, "value: $integer is not valid base64"),
        ({"$float": "AQ=="}, "value: $float must encode 8 bytes, got 1"),
        ({"$float": "AAAAAAAA8D8="}, "value: $float 1.0 is an ordinary number"),
        ({"$float": "AAAAAAAAAAA="}, "value: $float 0.0 is an ordinary number"),
        ({"$bytes": None}, "value: $bytes must be a base64 string, got NoneType"),
        ({"$bytes": "A"}, "value: $bytes is not valid base64"),
        ({"a": {"$ref": "x"}}, "value.a: field name '$ref' starts with '$'"),
        ({"$integer": "AQAAAAAAAAA=", "b": 1.0}, "value: field name '$integer' starts with '$'"),
        ([{"a\tb": 1}], "value[0]: field name 'a\\tb' contains"),
    ],
)
def test_from_json_rejects_malformed_input(obj: object, message: str) -> None:
    with pytest.raises(InvalidValueError) as raised:
        from_json(obj)
    assert raised.value.message.startswith(message)


@given(convex_values)
def test_json_round_trip_through_text(value: Any) -> None:
    text = json.dumps(to_json(value), allow_nan=False)
    assert values_equal(from_json(json.loads(text)), value)


# --- check_value ---------------------------------------------------------------------


@given(convex_values)
def test_size_is_the_compact_json_encoding_length(value: Any) -> None:
    expected = len(json_dumps_canonical(to_json(value)).encode("utf-8"))
    assert check_value(value) == expected


def test_size_examples() -> None:
    assert check_value(None) == 4
    assert check_value(1) == len('{"$integer":"AQAAAAAAAAA="}')
    assert check_value(float("nan")) == len('{"$float":"AAAAAAAA+H8="}')
    assert check_value({"a": "é"}) == len('{"a":"é"}'.encode())
    assert check_value({"q": 'say "hi"\n'}) == len(
        json.dumps({"q": 'say "hi"\n'}, separators=(",", ":"))
    )


def test_depth_limit() -> None:
    assert check_value(nested_lists(MAX_DEPTH)) == 2 * MAX_DEPTH
    with pytest.raises(InvalidValueError) as raised:
        check_value({"a": nested_lists(MAX_DEPTH)})
    expected_path = "value.a" + "[0]" * (MAX_DEPTH - 1)
    assert raised.value.message == (
        f"{expected_path}: value is nested more than the limit of {MAX_DEPTH} levels"
    )


def test_array_length_limit() -> None:
    check_value({"tags": [None] * MAX_ARRAY_LEN})
    with pytest.raises(InvalidValueError) as raised:
        check_value({"tags": [None] * 9000})
    assert (
        raised.value.message == "value.tags: array has 9000 elements, more than the limit of 8192"
    )


def test_object_field_count_limit() -> None:
    check_value({f"f{i}": 1 for i in range(MAX_OBJECT_FIELDS)})
    with pytest.raises(InvalidValueError) as raised:
        check_value({"nested": {f"f{i}": 1 for i in range(1025)}})
    assert raised.value.message == (
        "value.nested: object has 1025 fields, more than the limit of 1024"
    )


def test_size_limit() -> None:
    just_fits = "x" * (MAX_DOCUMENT_BYTES - len('{"s":""}'))
    assert check_value({"s": just_fits}) == MAX_DOCUMENT_BYTES
    with pytest.raises(InvalidValueError) as raised:
        check_value({"s": just_fits + "x"})
    assert raised.value.message == (
        f"value: value is {MAX_DOCUMENT_BYTES + 1} bytes,"
        f" more than the limit of {MAX_DOCUMENT_BYTES}"
    )
    with pytest.raises(
        InvalidValueError, match=r"^args: value is 9 bytes, more than the limit of 8$"
    ):
        check_value([1.5, 2.5], path="args", max_bytes=8)


def test_check_value_rejects_what_to_json_rejects_and_lone_surrogates() -> None:
    with pytest.raises(InvalidValueError, match=r"^value\.a\[1\]: tuple"):
        check_value({"a": [1, ()]})
    with pytest.raises(InvalidValueError, match=r"^value\.n: integer"):
        check_value({"n": 2**64})
    with pytest.raises(InvalidValueError, match=r"^value: field name '\$x'"):
        check_value({"$x": 1})
    with pytest.raises(InvalidValueError, match=r"^value\.s: string .* lone surrogate"):
        check_value({"s": "a\ud800"})


# --- json_dumps_canonical, values_equal, type_name ------------------------------------


def test_json_dumps_canonical_is_compact_sorted_and_unescaped() -> None:
    assert json_dumps_canonical({"b": [1, {"d": 1, "c": "é"}], "a": None}) == (
        '{"a":null,"b":[1,{"c":"é","d":1}]}'
    )
    assert json_dumps_canonical(to_json({"y": 1, "x": 2})) == json_dumps_canonical(
        to_json({"x": 2, "y": 1})
    )


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        (1, 1, True),
        (1, 1.0, False),
        (True, 1, False),
        (False, 0.0, False),
        (float("nan"), float("nan"), True),
        (float("nan"), -float("nan"), True),
        (-0.0, 0.0, False),
        (0.0, 0.0, True),
        (None, None, True),
        ("a", b"a", False),
        ([1, 2.0], [1, 2.0], True),
        ([1, 2.0], [1, 2], False),
        ([1], [1, 1], False),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}, True),
        ({"a": 1}, {"a": 1.0}, False),
        ({"a": 1}, {"b": 1}, False),
        ({"a": []}, [], False),
    ],
)
def test_values_equal(a: object, b: object, equal: bool) -> None:
    assert values_equal(a, b) is equal
    assert values_equal(b, a) is equal


@given(convex_values)
def test_values_equal_is_reflexive(value: Any) -> None:
    assert values_equal(value, value)


def test_type_name() -> None:
    examples: list[tuple[object, str]] = [
        (None, "null"),
        (1.0, "float64"),
        (1, "int64"),
        (True, "boolean"),
        ("s", "string"),
        (b"b", "bytes"),
        ([], "array"),
        ({}, "object"),
    ]
    assert [type_name(value) for value, _ in examples] == [name for _, name in examples]
    with pytest.raises(InvalidValueError, match="tuple is not a Convex value"):
        type_name(())


def test_float_bits_survive_the_round_trip() -> None:
    for number in (-0.0, math.inf, -math.inf, 5e-324, 1.7976931348623157e308):
        decoded = from_json(to_json(number))
        assert struct.pack("<d", decoded) == struct.pack("<d", number)
