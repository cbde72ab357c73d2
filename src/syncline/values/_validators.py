"""Convex validators: ``v.string()``, ``v.object({...})``, ``v.union(...)`` and the rest.

A validator checks a value and, on failure, raises :class:`ValidationError` with a
message that names the path and the problem::

    args.cursor.x: expected float64, got string
    args.ownerId: expected id of table 'users', got id of table 'rooms'
    args: unexpected field 'extra'
    args.name: missing required field
    args.kind: expected one of 'a' | 'b', got 'c'

:meth:`Validator.to_json` describes a validator in the shape of Convex's validator
JSON, and validators compare equal when their descriptions do.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Final, TypeAlias

from syncline._errors import InvalidIdError, InvalidValueError, ValidationError
from syncline.values._ids import decode_id
from syncline.values._json import (
    Value,
    check_field_name,
    check_int64,
    json_dumps_canonical,
    kind_of,
    to_json,
    values_equal,
)
from syncline.values._paths import excerpt, field_path

#: Maps an id to the name of its table, or ``None`` if it is no id of a known table.
IdTableLookup: TypeAlias = Callable[[str], str | None]


class _Mismatch(Exception):
    """A value failed a validator; :meth:`Validator.validate` turns it into ValidationError."""

    def __init__(self, path: str, problem: str, *, misfit_at: str | None) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem
        # The path of a value that is of no shape the validator accepts (the wrong
        # type, another literal, an object with another discriminator), as opposed
        # to one that fits the shape but has wrong contents. A union reports misfits
        # by the shapes it expected, and the other mismatches in detail.
        self.misfit_at = misfit_at


class Validator(ABC):
    """A Convex validator. Build them with the :data:`v` namespace."""

    #: Whether the field this validates may be absent from its object (``v.optional``).
    is_optional: ClassVar[bool] = False

    def validate(
        self, value: object, path: str = "value", *, id_table: IdTableLookup | None = None
    ) -> None:
        """Raise :class:`ValidationError` unless *value* matches this validator.

        *path* names *value* in the message. *id_table* tells ids' tables apart;
        without it, ``v.id(...)`` only checks that a value is a well-formed id.
        """
        try:
            self._check(value, path, id_table)
        except _Mismatch as mismatch:
            raise ValidationError(str(mismatch)) from None

    @abstractmethod
    def to_json(self) -> dict[str, Any]:
        """This validator in the shape of Convex's validator JSON."""

    @abstractmethod
    def __repr__(self) -> str: ...

    @abstractmethod
    def _check(self, value: object, path: str, id_table: IdTableLookup | None) -> None:
        """Raise :class:`_Mismatch` unless *value* matches."""

    @abstractmethod
    def _expected(self) -> str:
        """What this validator accepts, for "expected ..." in messages."""

    def _wrong_type(self, value: object, path: str) -> _Mismatch:
        return _Mismatch(
            path, f"expected {self._expected()}, got {_type_of(value)}", misfit_at=path
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Validator):
            return NotImplemented
        return self.is_optional == other.is_optional and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash((self.is_optional, json_dumps_canonical(self.to_json())))


class _TypeValidator(Validator):
    """A validator that accepts every value of one Convex type."""

    _kind: ClassVar[str]
    _json_type: ClassVar[str]
    _builder: ClassVar[str]

    def to_json(self) -> dict[str, Any]:
        return {"type": self._json_type}

    def __repr__(self) -> str:
        return f"v.{self._builder}()"

    def _check(self, value: object, path: str, id_table: IdTableLookup | None) -> None:
        if kind_of(value) != self._kind:
            raise self._wrong_type(value, path)

    def _expected(self) -> str:
        return self._kind


class StringValidator(_TypeValidator):
    """``v.string()``: any string."""

    _kind = "string"
    _json_type = "string"
    _builder = "string"


class Float64Validator(_TypeValidator):
    """``v.float64()`` (also ``v.number()``): a Python float; ints are not accepted."""

    _kind = "float64"
    _json_type = "number"
    _builder = "float64"


class Int64Validator(_TypeValidator):
    """``v.int64()`` (also ``v.bigint()``): a Python int in the int64 range, not a bool."""

    _kind = "int64"
    _json_type = "bigint"
    _builder = "int64"

    def _check(self, value: object, path: str, id_table: IdTableLookup | None) -> None:
        super()._check(value, path, id_table)
        assert isinstance(value, int)
        try:
            check_int64(value, path)
        except InvalidValueError:
            raise _Mismatch(
                path, "expected int64, got an integer outside the int64 range", misfit_at=path
            ) from None


class BooleanValidator(_TypeValidator):
    """``v.boolean()``: ``True`` or ``False``."""

    _kind = "boolean"
    _json_type = "boolean"
    _builder = "boolean"


class NullValidator(_TypeValidator):
    """``v.null()``: ``None``."""

    _kind = "null"
    _json_type = "null"
    _builder = "null"


class BytesValidator(_TypeValidator):
    """``v.bytes()``: any ``bytes``."""

    _kind = "bytes"
    _json_type = "bytes"
    _builder = "bytes"


class AnyValidator(Validator):
    """``v.any()``: every value."""

    def to_json(self) -> dict[str, Any]:
        return {"type": "any"}

    def __repr__(self) -> str:
        return "v.any()"

    def _check(self, value: object, path: str, id_table: IdTableLookup | None) -> None:
        return

    def _expected(self) -> str:
        return "any value"


class IdValidator(Validator):
    """``v.id(table_name)``: the id of a document of table *table_name*."""

    def __init__(self, table_name: str) -> None:
        if not isinstance(table_name, str) or not table_name:
            raise TypeError(f"v.id() takes a table name, got {table_name!r}")
        self.table_name: Final = table_name

    def to_json(self) -> dict[str, Any]:
        return {"type": "id", "tableName": self.table_name}

    def __repr__(self) -> str:
        return f"v.id({self.table_name!r})"

    def _check(self, value: object, path: str, id_table: IdTableLookup | None) -> None:
        if not isinstance(value, str):
            raise self._wrong_type(value, path)
        if id_table is None:
            try:
                decode_id(value)
            except InvalidIdError:
                raise self._invalid_id(value, path) from None
            return
        table = id_table(value)
        if table is None:
            raise self._invalid_id(value, path)
        if table != self.table_name:
            raise _Mismatch(
                path, f"expected {self._expected()}, got id of table {table!r}", misfit_at=path
            )

    def _invalid_id(self, value: str, path: str) -> _Mismatch:
        problem = (
            f"expected {self._expected()}, got {excerpt(value)}, which is not a valid document id"
        )
        return _Mismatch(path, problem, misfit_at=path)

    def _expected(self) -> str:
        return f"id of table {self.table_name!r}"


class ArrayValidator(Validator):
    """``v.array(item)``: a list whose every element matches *item*."""

    def __init__(self, item: Validator) -> None:
        self.item: Final = _member(item, "v.array() item")

    def to_json(self) -> dict[str, Any]:
        return {"type": "array", "value": self.item.to_json()}

    def __repr__(self) -> str:
        return f"v.array({self.item!r})"

    def _check(self, value: object, path: str, id_table: IdTableLookup | None) -> None:
        if not isinstance(value, list):
            raise self._wrong_type(value, path)
        for i, element in enumerate(value):
            self.item._check(element, f"{path}[{i}]", id_table)

    def _expected(self) -> str:
        return "array"


class ObjectValidator(Validator):
    """``v.object(fields)``: a dict with exactly these fields (optional ones may be absent)."""

    def __init__(self, fields: Mapping[str, Validator]) -> None:
        if not isinstance(fields, Mapping):
            raise TypeError(f"v.object() takes a dict of validators, got {type(fields).__name__}")
        checked: dict[str, Validator] = {}
        for name, validator in fields.items():
            try:
                check_field_name(name, "v.object()")
            except InvalidValueError as exc:
                raise ValueError(exc.message) from None
            if not isinstance(validator, Validator):
                problem = (
                    f"v.object() field {name!r} must be a Validator, got {type(validator).__name__}"
                )
                if isinstance(validator, Mapping):
                    problem += "; wrap nested objects in v.object(...)"
                raise TypeError(problem)
            checked[name] = validator
        #: The validator of each field.
        self.fields: Final[Mapping[str, Validator]] = checked

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "object",
            "value": {
                name: {"fieldType": validator.to_json(), "optional": validator.is_optional}
                for name, validator in self.fields.items()
            },
        }

    def __repr__(self) -> str:
        fields = ", ".join(f"{name!r}: {validator!r}" for name, validator in self.fields.items())
        return f"v.object({{{fields}}})"

    def _check(self, value: object, path: str, id_table: IdTableLookup | None) -> None:
        if not isinstance(value, dict):
            raise self._wrong_type(value, path)
        # A literal field that differs (``kind: 'b'`` against ``kind: 'a'``) means the
        # value is another member of a tagged union, not a broken one of this shape.
        for name, validator in self.fields.items():
            if name in value and _is_literal_choice(validator):
                try:
                    validator._check(value[name], field_path(path, name), id_table)
                except _Mismatch as mismatch:
                    raise _Mismatch(mismatch.path, mismatch.problem, misfit_at=path) from None
        # Extra fields first: for a misspelt field name, "unexpected field 'nme'"
        # points at the mistake better than "name: missing required field".
        for name in value:
            if name not in self.fields:
                raise _Mismatch(path, f"unexpected field {_quote(name)}", misfit_at=None)
        for name, validator in self.fields.items():
            if name in value:
                validator._check(value[name], field_path(path, name), id_table)
            elif not validator.is_optional:
                raise _Mismatch(field_path(path, name), "missing required field", misfit_at=None)

    def _expected(self) -> str:
        return "object"


class RecordValidator(Validator):
    """``v.record(keys, values)``: a dict whose every key matches *keys* and value *values*."""

    def __init__(self, keys: Validator, values: Validator) -> None:
        if not isinstance(keys, StringValidator | IdValidator):
            raise TypeError(f"v.record() keys must be v.string() or v.id(...), got {keys!r}")
        self.keys: Final = keys
        self.values: Final = _member(values, "v.record() values")

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "record",
            "keys": self.keys.to_json(),
            "values": {"fieldType": self.values.to_json(), "optional": False},
        }

    def __repr__(self) -> str:
        return f"v.record({self.keys!r}, {self.values!r})"

    def _check(self, value: object, path: str, id_table: IdTableLookup | None) -> None:
        if not isinstance(value, dict):
            raise self._wrong_type(value, path)
        for key, item in value.items():
            try:
                self.keys._check(key, path, id_table)
            except _Mismatch as mismatch:
                raise _Mismatch(
                    path, f"invalid key {_quote(key)}: {mismatch.problem}", misfit_at=None
                ) from None
            self.values._check(item, field_path(path, str(key)), id_table)

    def _expected(self) -> str:
        return "object"


class LiteralValidator(Validator):
    """``v.literal(value)``: exactly *value*, of the same type (``1`` is not ``1.0``)."""

    def __init__(self, value: str | float | int | bool) -> None:
        if kind_of(value) not in ("string", "float64", "int64", "boolean"):
            raise TypeError(
                f"v.literal() takes a str, float, int or bool, got {type(value).__name__}"
            )
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                check_int64(value, "v.literal()")
            except InvalidValueError as exc:
                raise ValueError(exc.message) from None
        self.value: Final[Value] = value

    def to_json(self) -> dict[str, Any]:
        return {"type": "literal", "value": to_json(self.value)}

    def __repr__(self) -> str:
        return f"v.literal({self.value!r})"

    def _check(self, value: object, path: str, id_table: IdTableLookup | None) -> None:
        if kind_of(value) != kind_of(self.value) or not values_equal(value, self.value):
            problem = f"expected {self._expected()}, got {_describe(value)}"
            raise _Mismatch(path, problem, misfit_at=path)

    def _expected(self) -> str:
        return _describe(self.value)


class UnionValidator(Validator):
    """``v.union(*members)``: a value that matches at least one of *members*."""

    def __init__(self, *members: Validator) -> None:
        if not members:
            raise TypeError("v.union() needs at least one member")
        self.members: Final = tuple(_member(member, "v.union() member") for member in members)

    def to_json(self) -> dict[str, Any]:
        return {"type": "union", "value": [member.to_json() for member in self.members]}

    def __repr__(self) -> str:
        return f"v.union({', '.join(repr(member) for member in self.members)})"

    def _check(self, value: object, path: str, id_table: IdTableLookup | None) -> None:
        mismatches: list[_Mismatch] = []
        for member in self.members:
            try:
                member._check(value, path, id_table)
            except _Mismatch as mismatch:
                mismatches.append(mismatch)
            else:
                return
        # Members that the value fits in shape explain the failure best; failing
        # those, discriminator mismatches inside the value; failing those, the
        # list of expected types.
        detailed = [m for m in mismatches if m.misfit_at != path] or [
            m for m in mismatches if m.path != path
        ]
        if detailed:
            summary = "; ".join(dict.fromkeys(str(mismatch) for mismatch in detailed))
            problem = f"value does not match any member of the union: {summary}"
            misfit = all(m.misfit_at == path for m in mismatches)
            raise _Mismatch(path, problem, misfit_at=path if misfit else None)
        if all(isinstance(member, LiteralValidator) for member in self.members):
            problem = f"expected one of {self._expected()}, got {_describe(value)}"
        else:
            got = _describe(value) if _has_literal(self) else _type_of(value)
            problem = "value does not match any member of the union: "
            problem += f"expected {self._expected()}, got {got}"
        raise _Mismatch(path, problem, misfit_at=path)

    def _expected(self) -> str:
        return " | ".join(member._expected() for member in self.members)


class OptionalValidator(Validator):
    """``v.optional(inner)``: a field that may be absent, or else matches *inner*.

    ``None`` is a value, not an absence: it must match *inner*.
    """

    is_optional = True

    def __init__(self, inner: Validator) -> None:
        self.inner: Final = _member(inner, "v.optional() argument")

    def to_json(self) -> dict[str, Any]:
        # Convex's JSON marks optionality on the object field ({"optional": true}).
        return self.inner.to_json()

    def __repr__(self) -> str:
        return f"v.optional({self.inner!r})"

    def _check(self, value: object, path: str, id_table: IdTableLookup | None) -> None:
        self.inner._check(value, path, id_table)

    def _expected(self) -> str:
        return self.inner._expected()


class _Builders:
    """The type of :data:`v`: one method per Convex validator builder."""

    def string(self) -> StringValidator:
        """Any string."""
        return StringValidator()

    def float64(self) -> Float64Validator:
        """A float (not an int)."""
        return Float64Validator()

    def number(self) -> Float64Validator:
        """Same as :meth:`float64`."""
        return Float64Validator()

    def int64(self) -> Int64Validator:
        """An int in the int64 range (not a bool)."""
        return Int64Validator()

    def bigint(self) -> Int64Validator:
        """Same as :meth:`int64`."""
        return Int64Validator()

    def boolean(self) -> BooleanValidator:
        """``True`` or ``False``."""
        return BooleanValidator()

    def null(self) -> NullValidator:
        """``None``."""
        return NullValidator()

    def id(self, table_name: str) -> IdValidator:
        """The id of a document of table *table_name*."""
        return IdValidator(table_name)

    def array(self, item: Validator) -> ArrayValidator:
        """A list whose every element matches *item*."""
        return ArrayValidator(item)

    def record(self, keys: Validator, values: Validator) -> RecordValidator:
        """A dict whose keys match *keys* (``v.string()`` or ``v.id(...)``) and values *values*."""
        return RecordValidator(keys, values)

    def union(self, *members: Validator) -> UnionValidator:
        """A value that matches at least one of *members*."""
        return UnionValidator(*members)

    def literal(self, value: str | float | int | bool) -> LiteralValidator:
        """Exactly *value*, of the same type."""
        return LiteralValidator(value)

    def optional(self, inner: Validator) -> OptionalValidator:
        """An object field that may be absent, or else matches *inner*."""
        if isinstance(inner, OptionalValidator):
            return inner
        return OptionalValidator(inner)

    def nullable(self, inner: Validator) -> UnionValidator:
        """*inner* or ``None``: ``v.union(inner, v.null())``."""
        return UnionValidator(inner, NullValidator())

    def any(self) -> AnyValidator:
        """Every value."""
        return AnyValidator()

    # Last, so that the names of builtins are not shadowed in the annotations above.
    def bytes(self) -> BytesValidator:
        """Any bytes."""
        return BytesValidator()

    def object(self, fields: Mapping[str, Validator]) -> ObjectValidator:
        """A dict with exactly these fields; ``v.optional(...)`` ones may be absent."""
        return ObjectValidator(fields)


#: The validator builders: ``v.string()``, ``v.object({"x": v.float64()})``, ...
v: Final = _Builders()


def as_validator(spec: Validator | Mapping[str, Validator]) -> Validator:
    """*spec* itself if it is a validator; a dict of validators becomes ``v.object(spec)``."""
    if isinstance(spec, Validator):
        return spec
    if isinstance(spec, Mapping):
        return ObjectValidator(spec)
    raise TypeError(f"expected a Validator or a dict of validators, got {type(spec).__name__}")


def _member(validator: object, role: str) -> Validator:
    """*validator*, checked to be a validator that may stand where *role* says."""
    if not isinstance(validator, Validator):
        raise TypeError(f"{role} must be a Validator, got {type(validator).__name__}")
    if validator.is_optional:
        raise TypeError(f"{role} cannot be optional; v.optional() is only for object fields")
    return validator


def _is_literal_choice(validator: Validator) -> bool:
    """Whether *validator* accepts only literals: a tagged union's discriminator."""
    if isinstance(validator, UnionValidator):
        return all(_is_literal_choice(member) for member in validator.members)
    return isinstance(validator, LiteralValidator)


def _has_literal(validator: Validator) -> bool:
    if isinstance(validator, UnionValidator):
        return any(_has_literal(member) for member in validator.members)
    return isinstance(validator, LiteralValidator)


def _type_of(value: object) -> str:
    kind = kind_of(value)
    return kind if kind is not None else f"unsupported type {type(value).__name__}"


def _describe(value: object) -> str:
    """A scalar as it would be written in a literal; anything else by its type."""
    if isinstance(value, str):
        return excerpt(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return _type_of(value)


def _quote(key: object) -> str:
    return excerpt(key) if isinstance(key, str) else repr(key)
