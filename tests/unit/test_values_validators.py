"""Validators: what each accepts, the messages of failures, JSON form and equality."""

from __future__ import annotations

import math
from typing import Any

import pytest

from syncline._errors import SynclineError, ValidationError
from syncline.values import (
    IdTableLookup,
    ObjectValidator,
    Validator,
    as_validator,
    new_id,
    v,
)

USERS_ID = new_id(1, rand=lambda n: b"u" * n)
ROOMS_ID = new_id(2, rand=lambda n: b"r" * n)


def id_table(document_id: str) -> str | None:
    return {USERS_ID: "users", ROOMS_ID: "rooms"}.get(document_id)


def failure(
    validator: Validator, value: object, path: str = "args", id_table: IdTableLookup | None = None
) -> str:
    with pytest.raises(ValidationError) as raised:
        validator.validate(value, path, id_table=id_table)
    return raised.value.message


# --- what each validator accepts --------------------------------------------------------

ACCEPTS: list[tuple[Validator, list[object], list[object]]] = [
    (v.string(), ["", "x"], [None, b"x", 1, ["x"]]),
    (v.float64(), [1.0, -0.0, math.nan, math.inf], [1, True, "1.0", None]),
    (v.number(), [2.5], [2]),
    (v.int64(), [0, -(2**63), 2**63 - 1], [1.0, True, False, 2**63, -(2**63) - 1]),
    (v.bigint(), [5], [5.0]),
    (v.boolean(), [True, False], [0, 1, 1.0, None]),
    (v.null(), [None], [0, False, "", []]),
    (v.bytes(), [b"", b"\x00"], [bytearray(b"x"), "x", []]),
    (v.any(), [None, 1, 1.0, "s", [{"a": b""}], {}], []),
    (v.array(v.int64()), [[], [1, 2]], [[1.0], (1,), {"0": 1}]),
    (v.literal("a"), ["a"], ["b", "A", None]),
    (v.literal(1), [1], [1.0, True]),
    (v.literal(1.0), [1.0], [1, True]),
    (v.literal(True), [True], [1, 1.0, False]),
    (v.literal(math.nan), [math.nan], [1.0]),
    (v.union(v.string(), v.int64()), ["s", 3], [3.0, None]),
    (v.nullable(v.string()), ["s", None], [1.0]),
    (v.record(v.string(), v.float64()), [{}, {"a": 1.0, "b c": 2.0}], [{"a": 1}, [], None]),
    (v.object({"a": v.optional(v.string())}), [{}, {"a": "x"}], [{"a": None}, {"b": "x"}]),
]


@pytest.mark.parametrize(("validator", "good", "bad"), ACCEPTS, ids=[repr(c[0]) for c in ACCEPTS])
def test_accepts_and_rejects(validator: Validator, good: list[object], bad: list[object]) -> None:
    for value in good:
        validator.validate(value)
    for value in bad:
        with pytest.raises(ValidationError):
            validator.validate(value)


# --- messages ------------------------------------------------------------------------

ARGS = v.object(
    {
        "name": v.string(),
        "cursor": v.object({"x": v.float64(), "y": v.float64()}),
        "ownerId": v.id("users"),
        "kind": v.union(v.literal("a"), v.literal("b")),
        "tags": v.optional(v.array(v.string())),
    }
)
GOOD_ARGS: dict[str, Any] = {
    "name": "n",
    "cursor": {"x": 1.0, "y": 2.0},
    "ownerId": USERS_ID,
    "kind": "a",
}


def test_good_args_pass_with_and_without_an_id_table() -> None:
    ARGS.validate(GOOD_ARGS, "args")
    ARGS.validate(GOOD_ARGS, "args", id_table=id_table)
    ARGS.validate({**GOOD_ARGS, "tags": ["t"]}, "args", id_table=id_table)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cursor": {"x": "1", "y": 2.0}}, "args.cursor.x: expected float64, got string"),
        ({"cursor": {"x": 1.0, "y": 2}}, "args.cursor.y: expected float64, got int64"),
        (
            {"ownerId": ROOMS_ID},
            "args.ownerId: expected id of table 'users', got id of table 'rooms'",
        ),
        (
            {"ownerId": "nope"},
            "args.ownerId: expected id of table 'users', got 'nope',"
            " which is not a valid document id",
        ),
        ({"ownerId": 1.0}, "args.ownerId: expected id of table 'users', got float64"),
        ({"extra": 1.0}, "args: unexpected field 'extra'"),
        ({"name": None}, "args.name: expected string, got null"),
        ({"kind": "c"}, "args.kind: expected one of 'a' | 'b', got 'c'"),
        ({"kind": 1}, "args.kind: expected one of 'a' | 'b', got 1"),
        ({"tags": ["a", 2.5]}, "args.tags[1]: expected string, got float64"),
        ({"tags": None}, "args.tags: expected array, got null"),
    ],
)
def test_messages_name_the_path_and_the_problem(change: dict[str, Any], message: str) -> None:
    assert failure(ARGS, {**GOOD_ARGS, **change}, id_table=id_table) == message


def test_missing_required_field() -> None:
    args = {key: value for key, value in GOOD_ARGS.items() if key != "name"}
    assert failure(ARGS, args) == "args.name: missing required field"


def test_not_an_object_at_all() -> None:
    assert failure(ARGS, [1]) == "args: expected object, got array"
    assert failure(ARGS, (1,)) == "args: expected object, got unsupported type tuple"


def test_id_without_a_table_lookup_checks_only_the_format() -> None:
    v.id("users").validate(ROOMS_ID)
    assert failure(v.id("users"), "abc", "value") == (
        "value: expected id of table 'users', got 'abc', which is not a valid document id"
    )


def test_id_table_that_does_not_know_the_id() -> None:
    unknown = new_id(99)
    assert failure(v.id("users"), unknown, "args.o", id_table=id_table) == (
        f"args.o: expected id of table 'users', got '{unknown}', which is not a valid document id"
    )


def test_int64_out_of_range_and_literal_mismatch() -> None:
    assert (
        failure(v.int64(), 2**64) == "args: expected int64, got an integer outside the int64 range"
    )
    assert failure(v.int64(), True) == "args: expected int64, got boolean"
    assert failure(v.literal("a"), "b") == "args: expected 'a', got 'b'"
    assert failure(v.literal(1), 1.0) == "args: expected 1, got 1.0"
    assert failure(v.literal(False), None) == "args: expected false, got null"


def test_union_of_types_lists_what_it_expected() -> None:
    assert failure(v.union(v.string(), v.null()), 1.5, "args.x") == (
        "args.x: value does not match any member of the union: expected string | null, got float64"
    )
    assert failure(v.nullable(v.literal("a")), "b", "args.x") == (
        "args.x: value does not match any member of the union: expected 'a' | null, got 'b'"
    )


def test_tagged_union_reports_the_member_whose_tag_matched() -> None:
    shapes = v.union(
        v.object({"kind": v.literal("circle"), "r": v.float64()}),
        v.object({"kind": v.literal("rect"), "w": v.float64(), "h": v.float64()}),
    )
    shapes.validate({"kind": "rect", "w": 1.0, "h": 2.0})
    assert failure(shapes, {"kind": "rect", "w": 1.0}, "args.shape") == (
        "args.shape: value does not match any member of the union:"
        " args.shape.h: missing required field"
    )
    assert failure(shapes, {"kind": "circle", "r": "big"}, "args.shape") == (
        "args.shape: value does not match any member of the union:"
        " args.shape.r: expected float64, got string"
    )
    assert failure(shapes, {"kind": "square"}, "args.shape") == (
        "args.shape: value does not match any member of the union:"
        " args.shape.kind: expected 'circle', got 'square';"
        " args.shape.kind: expected 'rect', got 'square'"
    )


def test_union_lists_every_member_that_fits_in_shape() -> None:
    union = v.union(v.object({"a": v.float64()}), v.object({"b": v.string()}), v.null())
    assert failure(union, {"a": "x"}) == (
        "args: value does not match any member of the union:"
        " args.a: expected float64, got string; args: unexpected field 'a'"
    )


def test_record_messages() -> None:
    scores = v.record(v.id("users"), v.float64())
    scores.validate({USERS_ID: 1.0}, id_table=id_table)
    assert failure(scores, {USERS_ID: 1}, "args.s", id_table=id_table) == (
        f"args.s.{USERS_ID}: expected float64, got int64"
    )
    assert failure(v.record(v.string(), v.null()), {"a b": 1.0}) == (
        'args["a b"]: expected null, got float64'
    )
    assert failure(scores, {ROOMS_ID: 1.0}, "args.s", id_table=id_table) == (
        f"args.s: invalid key '{ROOMS_ID}': expected id of table 'users', got id of table 'rooms'"
    )
    assert failure(v.record(v.string(), v.any()), "x") == "args: expected object, got string"


def test_validation_error_is_a_syncline_error_with_a_code() -> None:
    with pytest.raises(SynclineError) as raised:
        v.string().validate(1.0)
    assert isinstance(raised.value, ValidationError)
    assert raised.value.code == "ValidationFailed"
    assert str(raised.value) == "value: expected string, got float64"


# --- optional, JSON form, equality, repr ---------------------------------------------


def test_is_optional() -> None:
    assert v.optional(v.string()).is_optional is True
    assert v.string().is_optional is False
    assert v.nullable(v.string()).is_optional is False
    assert v.optional(v.optional(v.string())) == v.optional(v.string())


def test_to_json_matches_convex_validator_json() -> None:
    validator = v.object(
        {
            "s": v.string(),
            "f": v.float64(),
            "i": v.int64(),
            "b": v.boolean(),
            "n": v.null(),
            "y": v.bytes(),
            "a": v.any(),
            "id": v.id("users"),
            "arr": v.array(v.number()),
            "lit": v.literal(1),
            "u": v.union(v.literal("a"), v.null()),
            "r": v.record(v.string(), v.bigint()),
            "o": v.optional(v.string()),
        }
    )
    assert validator.to_json() == {
        "type": "object",
        "value": {
            "s": {"fieldType": {"type": "string"}, "optional": False},
            "f": {"fieldType": {"type": "number"}, "optional": False},
            "i": {"fieldType": {"type": "bigint"}, "optional": False},
            "b": {"fieldType": {"type": "boolean"}, "optional": False},
            "n": {"fieldType": {"type": "null"}, "optional": False},
            "y": {"fieldType": {"type": "bytes"}, "optional": False},
            "a": {"fieldType": {"type": "any"}, "optional": False},
            "id": {"fieldType": {"type": "id", "tableName": "users"}, "optional": False},
            "arr": {"fieldType": {"type": "array", "value": {"type": "number"}}, "optional": False},
            "lit": {
                "fieldType": {"type": "literal", "value": {"$integer": "AQAAAAAAAAA="}},
                "optional": False,
            },
            "u": {
                "fieldType": {
                    "type": "union",
                    "value": [{"type": "literal", "value": "a"}, {"type": "null"}],
                },
                "optional": False,
            },
            "r": {
                "fieldType": {
                    "type": "record",
                    "keys": {"type": "string"},
                    "values": {"fieldType": {"type": "bigint"}, "optional": False},
                },
                "optional": False,
            },
            "o": {"fieldType": {"type": "string"}, "optional": True},
        },
    }


def test_equality_and_hash_follow_the_description() -> None:
    assert v.number() == v.float64()
    assert v.bigint() == v.int64()
    assert v.object({"a": v.string()}) == v.object({"a": v.string()})
    assert v.object({"a": v.string()}) != v.object({"a": v.optional(v.string())})
    assert v.optional(v.string()) != v.string()
    assert v.literal(1) != v.literal(1.0)
    assert v.id("users") != v.id("rooms")
    assert v.nullable(v.string()) == v.union(v.string(), v.null())
    assert len({v.string(), v.string(), v.float64(), v.number()}) == 2
    assert v.string() != "string"


@pytest.mark.parametrize(
    ("validator", "text"),
    [
        (v.string(), "v.string()"),
        (v.number(), "v.float64()"),
        (v.bigint(), "v.int64()"),
        (v.id("users"), "v.id('users')"),
        (v.array(v.bytes()), "v.array(v.bytes())"),
        (v.object({"a": v.optional(v.null())}), "v.object({'a': v.optional(v.null())})"),
        (v.record(v.string(), v.any()), "v.record(v.string(), v.any())"),
        (v.nullable(v.boolean()), "v.union(v.boolean(), v.null())"),
        (v.literal("x"), "v.literal('x')"),
    ],
)
def test_repr(validator: Validator, text: str) -> None:
    assert repr(validator) == text


def test_object_exposes_its_fields_and_as_validator_wraps_dicts() -> None:
    fields = {"a": v.string(), "b": v.optional(v.int64())}
    validator = as_validator(fields)
    assert isinstance(validator, ObjectValidator)
    assert dict(validator.fields) == fields
    assert as_validator(validator) is validator
    with pytest.raises(TypeError, match="expected a Validator or a dict of validators, got str"):
        as_validator("string")  # type: ignore[arg-type]


# --- construction errors ---------------------------------------------------------------

# The arguments below are wrong on purpose; the type checker would refuse them.
untyped_v: Any = v


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (
            lambda: untyped_v.object({"a": str}),
            TypeError,
            "v.object() field 'a' must be a Validator, got type",
        ),
        (
            lambda: untyped_v.object({"a": {"b": v.string()}}),
            TypeError,
            "got dict; wrap nested objects in v.object(...)",
        ),
        (
            lambda: untyped_v.object({"$a": v.string()}),
            ValueError,
            "field name '$a' starts with '$'",
        ),
        (
            lambda: untyped_v.object({1: v.string()}),
            ValueError,
            "object key of type int is not a string",
        ),
        (
            lambda: untyped_v.object([v.string()]),
            TypeError,
            "v.object() takes a dict of validators",
        ),
        (lambda: untyped_v.array("x"), TypeError, "v.array() item must be a Validator, got str"),
        (lambda: untyped_v.array(v.optional(v.string())), TypeError, "cannot be optional"),
        (lambda: untyped_v.union(), TypeError, "v.union() needs at least one member"),
        (
            lambda: untyped_v.union(v.string(), v.optional(v.null())),
            TypeError,
            "cannot be optional",
        ),
        (
            lambda: untyped_v.record(v.float64(), v.any()),
            TypeError,
            "keys must be v.string() or v.id",
        ),
        (
            lambda: untyped_v.record(v.string(), v.optional(v.any())),
            TypeError,
            "cannot be optional",
        ),
        (lambda: untyped_v.literal(None), TypeError, "v.literal() takes a str, float, int or bool"),
        (lambda: untyped_v.literal(b"x"), TypeError, "got bytes"),
        (lambda: untyped_v.literal(2**63), ValueError, "outside the int64 range"),
        (lambda: untyped_v.id(""), TypeError, "v.id() takes a table name"),
    ],
)
def test_construction_errors(build: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as raised:
        build()
    assert message in str(raised.value)
