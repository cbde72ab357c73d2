"""Document ids, which carry the number of their table.

An id is the lowercase Crockford base32 text (no padding) of::

    14 random bytes | table number, unsigned LEB128 varint | CRC-16 of what precedes

It is 28 to 32 characters long and URL-safe. The checksum is CRC-16/XMODEM: it
catches every error spanning at most 16 bits, so every mistyped character (5
bits) and every swap of two neighbouring characters (10 bits) is caught.
"""

from __future__ import annotations

import binascii
import os
from collections.abc import Callable
from typing import Final, NamedTuple

from syncline._errors import InvalidIdError
from syncline.values._paths import excerpt

#: The digits of an id, Crockford's base32 alphabet (no i, l, o, u) in lowercase.
ID_ALPHABET: Final = "0123456789abcdefghjkmnpqrstvwxyz"
#: Largest table number; a varint of at most 4 bytes keeps ids within 32 characters.
MAX_TABLE_NUMBER: Final = (1 << 28) - 1

_RANDOM_BYTES: Final = 14
_CHECKSUM_BYTES: Final = 2
_DIGIT_VALUES: Final = {char: value for value, char in enumerate(ID_ALPHABET)}
_MIN_ID_LENGTH: Final = 28  # 17 bytes: 14 random, 1 varint, 2 checksum
_MAX_ID_LENGTH: Final = 32  # 20 bytes: 14 random, 4 varint, 2 checksum


class DecodedId(NamedTuple):
    """What a document id holds."""

    table_number: int
    """The number of the table the document belongs to."""
    internal_id: bytes
    """The id's 14 random bytes, which identify the document within its table."""


def new_id(table_number: int, *, rand: Callable[[int], bytes] = os.urandom) -> str:
    """A fresh id for a document of table *table_number* (0 to :data:`MAX_TABLE_NUMBER`).

    *rand(n)* returns *n* random bytes; tests inject a deterministic one.
    """
    if not 0 <= table_number <= MAX_TABLE_NUMBER:
        raise ValueError(f"table number {table_number} is outside 0..{MAX_TABLE_NUMBER}")
    internal_id = rand(_RANDOM_BYTES)
    if len(internal_id) != _RANDOM_BYTES:
        raise ValueError(f"rand({_RANDOM_BYTES}) returned {len(internal_id)} bytes")
    return _encode(table_number, internal_id)


def decode_id(document_id: str) -> DecodedId:
    """The table number and internal id held by *document_id*.

    Raises :class:`InvalidIdError` (``"... is not a valid document id"``) if it has
    the wrong length or characters, or a bad checksum.
    """
    if not isinstance(document_id, str):
        raise InvalidIdError(f"{type(document_id).__name__} is not a valid document id")

    def invalid(reason: str) -> InvalidIdError:
        return InvalidIdError(f"{excerpt(document_id)} is not a valid document id ({reason})")

    if not _MIN_ID_LENGTH <= len(document_id) <= _MAX_ID_LENGTH:
        raise invalid(f"ids are {_MIN_ID_LENGTH} to {_MAX_ID_LENGTH} characters long")
    raw = _base32_decode(document_id)
    if raw is None:
        raise invalid("not lowercase base32")
    body, checksum = raw[:-_CHECKSUM_BYTES], raw[-_CHECKSUM_BYTES:]
    if checksum != _checksum(body):
        raise invalid("checksum mismatch")
    internal_id, varint = body[:_RANDOM_BYTES], body[_RANDOM_BYTES:]
    table_number = _varint_decode(varint)
    # Only the shortest varint is accepted, so that every id has one spelling.
    if table_number is None or _varint_encode(table_number) != varint:
        raise invalid("malformed table number")
    return DecodedId(table_number, internal_id)


def id_table_number(document_id: str) -> int | None:
    """The table number held by *document_id*, or ``None`` if it is not a valid id."""
    try:
        return decode_id(document_id).table_number
    except InvalidIdError:
        return None


def _encode(table_number: int, internal_id: bytes) -> str:
    body = internal_id + _varint_encode(table_number)
    return _base32_encode(body + _checksum(body))


def _checksum(body: bytes) -> bytes:
    return binascii.crc_hqx(body, 0).to_bytes(_CHECKSUM_BYTES, "big")


def _varint_encode(number: int) -> bytes:
    out = bytearray()
    while number >= 0x80:
        out.append(number & 0x7F | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def _varint_decode(data: bytes) -> int | None:
    number = 0
    for i, byte in enumerate(data):
        number |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return number if i == len(data) - 1 else None
    return None


def _base32_encode(data: bytes) -> str:
    n_chars = -(-8 * len(data) // 5)
    # Zero bits pad the data on the right up to a whole number of 5-bit digits.
    bits = int.from_bytes(data, "big") << (5 * n_chars - 8 * len(data))
    return "".join(ID_ALPHABET[(bits >> (5 * i)) & 31] for i in reversed(range(n_chars)))


def _base32_decode(text: str) -> bytes | None:
    bits = 0
    for char in text:
        digit = _DIGIT_VALUES.get(char)
        if digit is None:
            return None
        bits = bits << 5 | digit
    n_bytes, padding = divmod(5 * len(text), 8)
    # A canonical encoding pads with fewer than 5 bits, all zero.
    if padding >= 5 or bits & ((1 << padding) - 1):
        return None
    return (bits >> padding).to_bytes(n_bytes, "big")
