"""Byte and text encodings shared by storage backends."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable

from syncline.storage._interface import Document
from syncline.values import from_json, to_json

_PAIR_HEADER = struct.Struct(">II")


def encode_commit_keys(keys: Iterable[tuple[int, bytes]]) -> bytes:
    """Pack ``(index_id, key)`` pairs: u32 index id, u32 length, key bytes."""
    out = bytearray()
    for index_id, key in keys:
        out += _PAIR_HEADER.pack(index_id, len(key))
        out += key
    return bytes(out)


def decode_commit_keys(blob: bytes) -> tuple[tuple[int, bytes], ...]:
    pairs: list[tuple[int, bytes]] = []
    offset = 0
    view = memoryview(blob)
    while offset < len(blob):
        index_id, length = _PAIR_HEADER.unpack_from(view, offset)
        offset += _PAIR_HEADER.size
        pairs.append((index_id, bytes(view[offset : offset + length])))
        offset += length
    return tuple(pairs)


def encode_document(doc: Document) -> str:
    return json.dumps(to_json(doc), separators=(",", ":"), ensure_ascii=False)


def decode_document(text: str) -> Document:
    value = from_json(json.loads(text))
    assert isinstance(value, dict)
    return value
