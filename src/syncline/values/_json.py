"""Convex's value model in Python, its JSON wire encoding, and its limits.

=============  ============  ==========================================================
Python         Convex        JSON
=============  ============  ==========================================================
``None``       null          ``null``
``bool``       boolean       ``true`` / ``false``
``int``        int64         ``{"$integer": base64(8 bytes, little-endian)}``
``float``      float64       a number; ``{"$float": base64(8 bytes)}`` for NaN, ±inf, -0.0
``str``        string        a string
``bytes``      bytes         ``{"$bytes": base64}``
``list``       array         an array
``dict``       object        an object whose keys are field names
=============  ============  ==========================================================

The encoding is that of the official ``convex`` npm client (``convexToJson`` and
``jsonToConvex``), so values cross the wire to official clients bit for bit.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from collections.abc import Callable
from typing import Any, Final, TypeAlias

from syncline._errors import InvalidValueError
from syncline.values._paths import excerpt, field_path, index_path

#: A Convex value. ``bool`` must be told apart from ``int`` (it subclasses it).
Value: TypeAlias = bool | int | float | str | bytes | list["Value"] | dict[str, "Value"] | None

#: Largest document, measured as its compact JSON encoding in UTF-8.
MAX_DOCUMENT_BYTES: Final = 1 << 20
#: Most levels of nested arrays and objects in a document; a top-level object is level 1.
MAX_DEPTH: Final = 16
#: Most elements in one array.
MAX_ARRAY_LEN: Final = 8192
#: Longest field name, in characters.
MAX_FIELD_NAME_LENGTH: Final = 1024
#: Most fields in one object.
MAX_OBJECT_FIELDS: Final = 1024
INT64_MIN: Final = -(1 << 63)
INT64_MAX: Final = (1 << 63) - 1

# Values outside documents (function arguments and results) are not held to
# MAX_DEPTH, but recursion still needs a bound: this one turns a list that
# contains itself into an InvalidValueError rather than a RecursionError.
_MAX_NESTING: Final = 64

# Every NaN is one value in Convex's order; Python's own NaN stands for all of them.
_CANONICAL_NAN_BITS: Final = 0x7FF8_0000_0000_0000

# Sizes of fixed-shape JSON encodings: '{"$integer":"' + 12 base64 chars + '"}', etc.
_INTEGER_JSON_BYTES: Final = len('{"$integer":""}') + 12
_SPECIAL_FLOAT_JSON_BYTES: Final = len('{"$float":""}') + 12
_BYTES_JSON_OVERHEAD: Final = len('{"$bytes":""}')

_UNSUPPORTED_HINTS: Final[dict[type, str]] = {
    tuple: "use a list",
    set: "use a list",
    frozenset: "use a list",
    bytearray: "use bytes",
    memoryview: "use bytes",
}


def kind_of(value: object) -> str | None:
    """The Convex type name of *value*, or ``None`` if it is not a Convex value.

    Containers are not inspected, and ints are not range-checked.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bytes):
        return "bytes"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return None


def type_name(value: object) -> str:
    """The Convex type of *value*: ``"null"``, ``"float64"``, ``"int64"``, ``"boolean"``,
    ``"string"``, ``"bytes"``, ``"array"`` or ``"object"``.

    Raises :class:`InvalidValueError` if *value* is not of a Convex type.
    """
    kind = kind_of(value)
    if kind is None:
        raise InvalidValueError(f"{type(value).__name__} is not a Convex value")
    return kind


def check_field_name(name: object, path: str = "value") -> str:
    """Return *name* if it may name a field of an object, else raise :class:`InvalidValueError`.

    A field name is at most :data:`MAX_FIELD_NAME_LENGTH` printable ASCII characters
    (0x20 to 0x7E) and does not start with ``$``, which the JSON encoding reserves.
    *path* names the object, for the message.
    """
    if not isinstance(name, str):
        raise InvalidValueError(f"{path}: object key of type {type(name).__name__} is not a string")
    if len(name) > MAX_FIELD_NAME_LENGTH:
        raise InvalidValueError(
            f"{path}: field name {excerpt(name)} is {len(name)} characters long,"
            f" more than the limit of {MAX_FIELD_NAME_LENGTH}"
        )
    if name.startswith("$"):
        raise InvalidValueError(
            f"{path}: field name {excerpt(name)} starts with '$', which is reserved"
        )
    # For ASCII text, isprintable() is exactly "every character is in 0x20..0x7E".
    if not (name.isascii() and name.isprintable()):
        bad = next(char for char in name if not " " <= char <= "~")
        raise InvalidValueError(
            f"{path}: field name {excerpt(name)} contains {bad!r} (U+{ord(bad):04X});"
            " field names may only contain printable ASCII characters"
        )
    return name


_UNTRACKED = ""
"""A path not followed: child paths are not built. Values are first walked so,
and walked again with paths only when there is an error to name."""


def to_json(value: object) -> Any:
    """Encode a Convex value as JSON-compatible Python objects (``convexToJson``).

    Raises :class:`InvalidValueError`, naming the path (``value.a[2]: ...``), for a
    value of an unsupported type, an int outside int64, or an invalid field name.
    """
    try:
        return _to_json(value, _UNTRACKED, 0)
    except InvalidValueError:
        return _to_json(value, "value", 0)  # again, to name where the error is


def _to_json(value: object, path: str, depth: int) -> Any:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return {"$integer": _b64encode(_int64_to_bytes(value, path))}
    if isinstance(value, float):
        if is_special_float(value):
            return {"$float": _b64encode(struct.pack("<d", value))}
        return float(value)
    if isinstance(value, bytes):
        return {"$bytes": _b64encode(value)}
    if isinstance(value, list | dict):
        check_nesting(depth + 1, path)
    if isinstance(value, list):
        if not path:
            return [_to_json(item, path, depth + 1) for item in value]
        return [_to_json(item, index_path(path, i), depth + 1) for i, item in enumerate(value)]
    if isinstance(value, dict):
        encoded: dict[str, Any] = {}
        for key, item in value.items():
            name = check_field_name(key, path)
            encoded[name] = _to_json(item, field_path(path, name) if path else path, depth + 1)
        return encoded
    raise unsupported_error(value, path)


def from_json(obj: object) -> Value:
    """Decode JSON-compatible Python objects into a Convex value (``jsonToConvex``).

    Every JSON number becomes a float (``3`` becomes ``3.0``): int64 values travel
    only as ``{"$integer": ...}``. Raises :class:`InvalidValueError` for malformed
    ``$integer``/``$float``/``$bytes`` objects and for other field names that start
    with ``$``.
    """
    try:
        return _from_json(obj, _UNTRACKED, 0)
    except InvalidValueError:
        return _from_json(obj, "value", 0)  # again, to name where the error is


def _from_json(obj: object, path: str, depth: int) -> Value:
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, int):
        try:
            return float(obj)
        except OverflowError:
            raise InvalidValueError(f"{path}: JSON number {obj} is too large for float64") from None
    if isinstance(obj, float):
        return obj
    if isinstance(obj, list | dict):
        check_nesting(depth + 1, path)
    if isinstance(obj, list):
        if not path:
            return [_from_json(item, path, depth + 1) for item in obj]
        return [_from_json(item, index_path(path, i), depth + 1) for i, item in enumerate(obj)]
    if isinstance(obj, dict):
        if len(obj) == 1:
            ((key, payload),) = obj.items()
            decode = _SPECIAL_DECODERS.get(key)
            if decode is not None:
                return decode(payload, path)
        decoded: dict[str, Value] = {}
        for key, item in obj.items():
            name = check_field_name(key, path)
            decoded[name] = _from_json(item, field_path(path, name) if path else path, depth + 1)
        return decoded
    raise InvalidValueError(f"{path}: {type(obj).__name__} is not JSON")


def _decode_integer(payload: object, path: str) -> Value:
    raw = _b64decode_exact(payload, "$integer", path)
    return int.from_bytes(raw, "little", signed=True)


def _decode_float(payload: object, path: str) -> Value:
    raw = _b64decode_exact(payload, "$float", path)
    (number,) = struct.unpack("<d", raw)
    # An ordinary number has exactly one encoding, the JSON number, so that equal
    # values always have equal JSON (cache keys and official clients rely on it).
    if not is_special_float(number):
        raise InvalidValueError(
            f"{path}: $float {number!r} is an ordinary number and must be encoded as a JSON number"
        )
    return float(number)


def _decode_bytes(payload: object, path: str) -> Value:
    return _b64decode(payload, "$bytes", path)


_SPECIAL_DECODERS: Final[dict[str, Callable[[object, str], Value]]] = {
    "$integer": _decode_integer,
    "$float": _decode_float,
    "$bytes": _decode_bytes,
}


def check_value(value: object, *, path: str = "value", max_bytes: int = MAX_DOCUMENT_BYTES) -> int:
    """Validate *value* fully against Convex's rules and limits; return its size in bytes.

    Checks types, the int64 range, field names, strings being valid Unicode,
    nesting (:data:`MAX_DEPTH`), array lengths (:data:`MAX_ARRAY_LEN`) and the total
    size against *max_bytes*. The size is that of ``to_json(value)`` as compact JSON
    in UTF-8. Raises :class:`InvalidValueError` naming the path and the limit, e.g.
    ``value.tags: array has 9000 elements, more than the limit of 8192``.
    """
    try:
        # Without building a path per element: errors are rare, and then the
        # value is measured again to name where the error is.
        size = _measure(value, _UNTRACKED, 0)
    except InvalidValueError:
        size = _measure(value, path, 0)
    if size > max_bytes:
        raise InvalidValueError(
            f"{path}: value is {size} bytes, more than the limit of {max_bytes}"
        )
    return size


def _measure(value: object, path: str, depth: int) -> int:
    """The JSON size of ``value``; with ``_UNTRACKED`` errors do not say where."""
    if value is None:
        return len("null")
    if isinstance(value, bool):
        return len("true") if value else len("false")
    if isinstance(value, int):
        _int64_to_bytes(value, path)
        return _INTEGER_JSON_BYTES
    if isinstance(value, float):
        if is_special_float(value):
            return _SPECIAL_FLOAT_JSON_BYTES
        return len(float.__repr__(value))
    if isinstance(value, str):
        return _json_string_bytes(value, path)
    if isinstance(value, bytes):
        return _BYTES_JSON_OVERHEAD + 4 * ((len(value) + 2) // 3)
    if isinstance(value, list | dict):
        depth += 1
        if depth > MAX_DEPTH:
            raise InvalidValueError(
                f"{path}: value is nested more than the limit of {MAX_DEPTH} levels"
            )
    if isinstance(value, list):
        if len(value) > MAX_ARRAY_LEN:
            raise InvalidValueError(
                f"{path}: array has {len(value)} elements, more than the limit of {MAX_ARRAY_LEN}"
            )
        brackets_and_commas = 2 + max(len(value) - 1, 0)
        if not path:
            return brackets_and_commas + sum(_measure(item, path, depth) for item in value)
        return brackets_and_commas + sum(
            _measure(item, index_path(path, i), depth) for i, item in enumerate(value)
        )
    if isinstance(value, dict):
        if len(value) > MAX_OBJECT_FIELDS:
            raise InvalidValueError(
                f"{path}: object has {len(value)} fields, more than the limit of "
                f"{MAX_OBJECT_FIELDS}"
            )
        size = 2 + max(len(value) - 1, 0)
        for key, item in value.items():
            name = check_field_name(key, path)
            child = field_path(path, name) if path else _UNTRACKED
            size += _json_string_bytes(name, path) + 1 + _measure(item, child, depth)
        return size
    raise unsupported_error(value, path)


def _json_string_bytes(text: str, path: str) -> int:
    # Most strings are printable ASCII with nothing to escape: their JSON is the
    # text in quotes. Only the rest pay for encoding.
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return len(text) + 2
    try:
        return len(json.dumps(text, ensure_ascii=False).encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidValueError(
            f"{path}: string {excerpt(text)} contains a lone surrogate, which is not valid Unicode"
        ) from None


def json_dumps_canonical(obj: object) -> str:
    """Compact JSON with sorted keys, for cache keys: equal JSON gives equal text.

    Pass JSON-compatible objects (the output of :func:`to_json`), not raw values.
    """
    return json.dumps(
        obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False
    )


def values_equal(a: object, b: object) -> bool:
    """Whether two Convex values are the same value.

    Types count: ``1`` (int64) differs from ``1.0`` (float64) and ``True`` from ``1``.
    Floats compare by their bits, so ``-0.0`` differs from ``0.0`` and NaN equals NaN
    (every NaN is the same value, as in Convex's ordering). Object field order does
    not matter. Raises :class:`InvalidValueError` if either is not a Convex value.
    """
    kind = type_name(a)
    if kind != type_name(b):
        return False
    if isinstance(a, float) and isinstance(b, float):
        return float_bits(a) == float_bits(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(values_equal(a[key], b[key]) for key in a)
    return a == b


def float_bits(number: float) -> int:
    """The IEEE 754 bits of *number* as an unsigned int, with every NaN made one NaN."""
    if math.isnan(number):
        return _CANONICAL_NAN_BITS
    return int.from_bytes(struct.pack(">d", number), "big")


def is_special_float(number: float) -> bool:
    """Whether *number* has no JSON number form: NaN, ±infinity or -0.0."""
    return not math.isfinite(number) or (number == 0.0 and math.copysign(1.0, number) < 0)


def check_int64(number: int, path: str = "value") -> None:
    """Raise :class:`InvalidValueError` unless *number* fits in a signed 64-bit integer."""
    if not INT64_MIN <= number <= INT64_MAX:
        raise InvalidValueError(
            f"{path}: integer {number} is outside the int64 range [-2^63, 2^63)"
        )


def _int64_to_bytes(number: int, path: str) -> bytes:
    check_int64(number, path)
    return number.to_bytes(8, "little", signed=True)


def check_nesting(depth: int, path: str) -> None:
    """Raise :class:`InvalidValueError` if a container at *depth* is nested too deeply to walk."""
    if depth > _MAX_NESTING:
        raise InvalidValueError(
            f"{path}: value is nested more than {_MAX_NESTING} levels deep (is it cyclic?)"
        )


def unsupported_error(value: object, path: str) -> InvalidValueError:
    """The error for a *value* at *path* that is of no Convex type."""
    message = f"{path}: {type(value).__name__} is not a supported Convex value"
    hint = _UNSUPPORTED_HINTS.get(type(value))
    return InvalidValueError(f"{message} ({hint})" if hint else message)


def _b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _b64decode(payload: object, tag: str, path: str) -> bytes:
    if not isinstance(payload, str):
        raise InvalidValueError(
            f"{path}: {tag} must be a base64 string, got {type(payload).__name__}"
        )
    try:
        return base64.b64decode(payload, validate=True)
    except binascii.Error:
        raise InvalidValueError(f"{path}: {tag} is not valid base64: {excerpt(payload)}") from None


def _b64decode_exact(payload: object, tag: str, path: str) -> bytes:
    raw = _b64decode(payload, tag, path)
    if len(raw) != 8:
        raise InvalidValueError(f"{path}: {tag} must encode 8 bytes, got {len(raw)}")
    return raw
