"""Byte and text encodings shared by storage backends."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable

from syncline.storage._interface import Document
from syncline.values import from_json, to_json

_PAIR_HEADER = struct.Struct(">II")
TRACE_PAIR_INDEX_ID = 0xFFFFFFFF
"""No index has this id: a pair under it carries the commit's W3C traceparent.
Rows written before it existed decode as before, and a reader that does not know
it sees a key no subscription ever read."""


def encode_commit_keys(keys: Iterable[tuple[int, bytes]], traceparent: str = "") -> bytes:
    """Pack ``(index_id, key)`` pairs: u32 index id, u32 length, key bytes; then the
    traceparent of the commit's trace, if it was traced."""
    out = bytearray()
    for index_id, key in keys:
        out += _PAIR_HEADER.pack(index_id, len(key))
        out += key
    if traceparent:
        encoded = traceparent.encode()
        out += _PAIR_HEADER.pack(TRACE_PAIR_INDEX_ID, len(encoded)) + encoded
    return bytes(out)


def decode_commit_keys(blob: bytes) -> tuple[tuple[tuple[int, bytes], ...], str]:
    """The pairs ``encode_commit_keys`` packed, and the traceparent ("" for none)."""
    pairs: list[tuple[int, bytes]] = []
    traceparent = ""
    offset = 0
    view = memoryview(blob)
    while offset < len(blob):
        index_id, length = _PAIR_HEADER.unpack_from(view, offset)
        offset += _PAIR_HEADER.size
        value = bytes(view[offset : offset + length])
        if index_id == TRACE_PAIR_INDEX_ID:
            traceparent = value.decode(errors="replace")
        else:
            pairs.append((index_id, value))
        offset += length
    return tuple(pairs), traceparent


def encode_document(doc: Document) -> str:
    return json.dumps(to_json(doc), separators=(",", ":"), ensure_ascii=False)


def decode_document(text: str) -> Document:
    value = from_json(json.loads(text))
    assert isinstance(value, dict)
    return value
