"""Document ids: layout, round trip, and rejection of malformed or mistyped ids."""

from __future__ import annotations

import base64
import binascii
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncline._errors import InvalidIdError
from syncline.values import (
    ID_ALPHABET,
    MAX_TABLE_NUMBER,
    DecodedId,
    decode_id,
    id_table_number,
    new_id,
)

_RFC4648 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def parse_independently(document_id: str) -> tuple[bytes, bytes, bytes]:
    """Split an id into (random, varint, checksum) with the standard library's base32."""
    rfc = document_id.translate(str.maketrans(ID_ALPHABET, _RFC4648))
    n_bytes = len(document_id) * 5 // 8
    padded = rfc + "=" * (-len(rfc) % 8)
    raw = base64.b32decode(padded)[:n_bytes]
    return raw[:14], raw[14:-2], raw[-2:]


def with_body(body: bytes) -> str:
    """An id spelling of *body* plus its correct checksum, however odd the body."""
    raw = body + binascii.crc_hqx(body, 0).to_bytes(2, "big")
    rfc = base64.b32encode(raw).decode().rstrip("=")
    return rfc.translate(str.maketrans(_RFC4648, ID_ALPHABET))


@pytest.mark.parametrize(
    ("table_number", "length", "varint"),
    [
        (0, 28, b"\x00"),
        (1, 28, b"\x01"),
        (127, 28, b"\x7f"),
        (128, 29, b"\x80\x01"),
        (300, 29, b"\xac\x02"),
        (1 << 14, 31, b"\x80\x80\x01"),
        (1 << 21, 32, b"\x80\x80\x80\x01"),
        (MAX_TABLE_NUMBER, 32, b"\xff\xff\xff\x7f"),
    ],
)
def test_layout(table_number: int, length: int, varint: bytes) -> None:
    document_id = new_id(table_number, rand=lambda n: bytes(range(n)))
    assert len(document_id) == length
    assert set(document_id) <= set(ID_ALPHABET)
    random_part, varint_part, checksum = parse_independently(document_id)
    assert random_part == bytes(range(14))
    assert varint_part == varint
    assert checksum == binascii.crc_hqx(random_part + varint_part, 0).to_bytes(2, "big")
    assert decode_id(document_id) == DecodedId(table_number, bytes(range(14)))


@given(st.integers(0, MAX_TABLE_NUMBER), st.binary(min_size=14, max_size=14))
def test_round_trip(table_number: int, random_part: bytes) -> None:
    document_id = new_id(table_number, rand=lambda n: random_part)
    assert 26 <= len(document_id) <= 32
    assert document_id == document_id.lower()
    decoded = decode_id(document_id)
    assert decoded.table_number == table_number
    assert decoded.internal_id == random_part
    assert id_table_number(document_id) == table_number


def test_default_randomness_gives_distinct_ids() -> None:
    ids = {new_id(7) for _ in range(1000)}
    assert len(ids) == 1000
    assert {id_table_number(document_id) for document_id in ids} == {7}


def test_every_mistyped_character_is_detected() -> None:
    document_id = new_id(1234, rand=lambda n: b"\x00\xff" * 7)
    for position, char in itertools.product(range(len(document_id)), ID_ALPHABET):
        if document_id[position] == char:
            continue
        typo = document_id[:position] + char + document_id[position + 1 :]
        assert id_table_number(typo) is None, typo


def test_every_swap_of_neighbours_is_detected() -> None:
    document_id = new_id(42, rand=lambda n: bytes(range(100, 100 + n)))
    for position in range(len(document_id) - 1):
        a, b = document_id[position], document_id[position + 1]
        if a == b:
            continue
        swapped = document_id[:position] + b + a + document_id[position + 2 :]
        assert id_table_number(swapped) is None, swapped


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "ids are 28 to 32 characters long"),
        ("0" * 27, "ids are 28 to 32 characters long"),
        ("0" * 33, "ids are 28 to 32 characters long"),
        ("0" * 30, "not lowercase base32"),  # 150 bits: no whole number of bytes
        ("u" * 28, "not lowercase base32"),
        ("0" * 27 + "1", "not lowercase base32"),  # padding bits must be zero
        ("1" * 27 + "0", "checksum mismatch"),
        (with_body(b"\x01" * 14 + b"\x85\x00"), "malformed table number"),  # not the shortest
        (with_body(b"\x01" * 14 + b"\x85"), "malformed table number"),  # unterminated
        (with_body(b"\x01" * 14 + b"\x05\x05"), "malformed table number"),  # trailing byte
    ],
)
def test_malformed_ids(text: str, reason: str) -> None:
    with pytest.raises(InvalidIdError) as raised:
        decode_id(text)
    assert raised.value.message == f"{text!r} is not a valid document id ({reason})"
    assert id_table_number(text) is None


def test_uppercase_and_non_strings_are_rejected() -> None:
    document_id = new_id(3)
    with pytest.raises(InvalidIdError, match="not lowercase base32"):
        decode_id(document_id.upper())
    with pytest.raises(InvalidIdError, match=r"^int is not a valid document id$"):
        decode_id(12)  # type: ignore[arg-type]


def test_new_id_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="table number -1 is outside"):
        new_id(-1)
    with pytest.raises(ValueError, match="outside"):
        new_id(MAX_TABLE_NUMBER + 1)
    with pytest.raises(ValueError, match=r"rand\(14\) returned 3 bytes"):
        new_id(1, rand=lambda n: b"abc")
