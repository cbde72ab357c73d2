"""Order-preserving byte encoding of values, for index keys.

``encode_key(a) < encode_key(b)`` (comparing bytes) exactly when ``a`` sorts before
``b`` in Convex's total order over values::

    MISSING < null < int64 < float64 < boolean < string < bytes < array < object

Within a type: numbers by value, with ``-0.0`` before ``0.0`` and NaN after
``+inf``; ``False < True``; strings by code point (UTF-8 bytes); bytes bytewise;
arrays element by element, a prefix first; objects as their (field, value) pairs
sorted by field, compared pair by pair.

Layout: one type tag byte (0x01 to 0x09), then

- int64: 8 bytes big-endian with the sign bit flipped;
- float64: 8 bytes big-endian: negative numbers with all bits inverted, others with
  the sign bit flipped;
- boolean: one byte, 0x00 or 0x01;
- string, bytes: the body (UTF-8 for strings) with 0x00 written as 0x01 0x01 and
  0x01 as 0x01 0x02, then a 0x00 terminator;
- array: each element's encoding, then 0x00;
- object: for each field, sorted: the field name encoded as a string (with its
  tag), then the value's encoding; then 0x00.

Every encoding is prefix-free, so a concatenation of encodings (an index key over
several fields) compares field by field; and no encoding starts with 0x00 or
0xFF, so ``prefix + b"\\xff"`` bounds every key that starts with ``prefix``.

The body escape keeps 0x00 out of bodies so that the terminator is both smaller
than any body byte and unambiguous; the more common "0x00 becomes 0x00 0xFF"
escape leaves ``"a"`` (``61 00``) a prefix of ``"a\\x00"`` (``61 00 FF 00``).
Field names get the string tag because the empty name would otherwise encode as
a lone 0x00 and be mistaken for the object's terminator.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Final

from syncline._errors import InvalidValueError
from syncline.values._json import check_int64, check_nesting, float_bits, unsupported_error
from syncline.values._paths import field_path, index_path


class Missing(enum.Enum):
    """Type of :data:`MISSING`."""

    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "MISSING"


#: An absent field in an index key; sorts before every value, ``None`` included.
MISSING: Final = Missing.MISSING

_TAG_MISSING: Final = b"\x01"
_TAG_NULL: Final = b"\x02"
_TAG_INT64: Final = b"\x03"
_TAG_FLOAT64: Final = b"\x04"
_TAG_FALSE: Final = b"\x05\x00"
_TAG_TRUE: Final = b"\x05\x01"
_TAG_STRING: Final = b"\x06"
_TAG_BYTES: Final = b"\x07"
_TAG_ARRAY: Final = b"\x08"
_TAG_OBJECT: Final = b"\x09"
_END: Final = b"\x00"

_SIGN_BIT: Final = 1 << 63
_ALL_BITS: Final = (1 << 64) - 1


def encode_key(value: object) -> bytes:
    """The order-preserving, prefix-free encoding of one value or :data:`MISSING`.

    Raises :class:`InvalidValueError` if *value* is not a Convex value.
    """
    if value is MISSING:
        return _TAG_MISSING
    out = bytearray()
    _encode(value, out, "value", 0)
    return bytes(out)


def encode_index_key(values: Sequence[object]) -> bytes:
    """The key of an index entry: the encodings of its fields' *values*, concatenated.

    Keys compare like tuples of values, first field first.
    """
    return b"".join(encode_key(value) for value in values)


def prefix_end(prefix: bytes) -> bytes:
    """The exclusive upper bound of all keys that start with *prefix*."""
    return prefix + b"\xff"


def key_successor(key: bytes) -> bytes:
    """The smallest byte string greater than *key*: turns an inclusive bound exclusive."""
    return key + b"\x00"


def field_boundaries(key: bytes) -> list[int]:
    """End offsets of the complete value encodings at the start of *key*, in order.

    ``key[:i]`` for each offset ``i`` is the key of the first fields alone. Parsing
    stops at the first byte that does not start a value (such as a ``prefix_end``
    marker), so any byte string is accepted.
    """
    ends: list[int] = []
    position = 0
    while position < len(key):
        end = _skip(key, position)
        if end is None:
            break
        ends.append(end)
        position = end
    return ends


_FIXED_WIDTH: Final = {1: 1, 2: 1, 3: 9, 4: 9, 5: 2}


def _skip(key: bytes, position: int) -> int | None:
    """The end offset of the value encoding at *position*, or None if there is none.

    Iterative, with containers tracked by a depth count, so a hostile key (e.g.
    a pagination cursor of thousands of array tags) cannot exhaust the stack.
    """
    depth = 0
    while True:
        if position >= len(key):
            return None
        tag = key[position]
        if depth > 0 and tag == 0:
            depth -= 1  # a container's terminator
            position += 1
        elif tag in _FIXED_WIDTH:
            position += _FIXED_WIDTH[tag]
            if position > len(key):
                return None
        elif tag in (6, 7):
            # Bodies never contain 0x00 (it is escaped), so the first 0x00 terminates.
            end = key.find(b"\x00", position + 1)
            if end < 0:
                return None
            position = end + 1
        elif tag in (8, 9):
            depth += 1
            position += 1
        else:
            return None
        if depth == 0:
            return position


def compare_values(a: object, b: object) -> int:
    """-1, 0 or 1 as *a* sorts before, with, or after *b* in Convex's order."""
    key_a, key_b = encode_key(a), encode_key(b)
    return (key_a > key_b) - (key_a < key_b)


def _encode(value: object, out: bytearray, path: str, depth: int) -> None:
    if value is None:
        out += _TAG_NULL
    elif isinstance(value, bool):
        out += _TAG_TRUE if value else _TAG_FALSE
    elif isinstance(value, int):
        check_int64(value, path)
        out += _TAG_INT64
        # Shifting the range up by 2^63 is flipping the two's-complement sign bit.
        out += (value + _SIGN_BIT).to_bytes(8, "big")
    elif isinstance(value, float):
        bits = float_bits(value)
        out += _TAG_FLOAT64
        out += (bits ^ _ALL_BITS if bits & _SIGN_BIT else bits | _SIGN_BIT).to_bytes(8, "big")
    elif isinstance(value, str):
        out += _TAG_STRING
        _encode_body(_utf8(value, path), out)
    elif isinstance(value, bytes):
        out += _TAG_BYTES
        _encode_body(value, out)
    elif isinstance(value, list):
        check_nesting(depth + 1, path)
        out += _TAG_ARRAY
        for i, item in enumerate(value):
            _encode(item, out, index_path(path, i), depth + 1)
        out += _END
    elif isinstance(value, dict):
        check_nesting(depth + 1, path)
        out += _TAG_OBJECT
        fields = sorted((_utf8(_field_name(key, path), path), key) for key in value)
        for encoded_name, key in fields:
            out += _TAG_STRING
            _encode_body(encoded_name, out)
            _encode(value[key], out, field_path(path, key), depth + 1)
        out += _END
    elif value is MISSING:
        raise InvalidValueError(f"{path}: MISSING can only stand for a whole field of an index key")
    else:
        raise unsupported_error(value, path)


def _encode_body(body: bytes, out: bytearray) -> None:
    # Escape 0x01 first, so the 0x01 bytes that the 0x00 escape introduces stay as they are.
    out += body.replace(b"\x01", b"\x01\x02").replace(b"\x00", b"\x01\x01")
    out += _END


def _field_name(key: object, path: str) -> str:
    if not isinstance(key, str):
        raise InvalidValueError(f"{path}: object key of type {type(key).__name__} is not a string")
    return key


def _utf8(text: str, path: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidValueError(
            f"{path}: string contains a lone surrogate, which is not valid Unicode"
        ) from None
