"""Documents as PostgreSQL ``jsonb``: Convex JSON, with one escape for U+0000.

``jsonb`` stores Convex's JSON encoding (:func:`syncline.values.to_json`) as is,
except that PostgreSQL text cannot hold U+0000, which a Convex string may
contain. Such a string is stored as ``{"$nul": [parts]}``, its pieces between
the NULs. No Convex document contains that object: field names starting with
``$`` are reserved, so the escape is unambiguous. Documents without a NUL
(virtually all) are stored exactly as Convex JSON.

``jsonb`` also normalises object key order (shorter keys first), so a document
read back has the same fields and values but not necessarily its original
field order.
"""

from __future__ import annotations

import json
from typing import Any

from syncline.storage._codec import encode_document
from syncline.storage._interface import Document
from syncline.values import from_json, to_json

_NUL_KEY = "$nul"
_NUL_MARK = '"$nul"'


def encode_jsonb_document(doc: Document) -> str:
    """The ``jsonb`` input text of ``doc``."""
    text = encode_document(doc)
    # json.dumps always escapes U+0000, so a string holding one shows as \u0000.
    if "\\u0000" not in text:
        return text
    return json.dumps(_escape_nul(to_json(doc)), separators=(",", ":"), ensure_ascii=False)


def decode_jsonb_document(text: str) -> Document:
    """The document whose ``jsonb`` output text is ``text``."""
    obj = json.loads(text, object_hook=_unescape_nul) if _NUL_MARK in text else json.loads(text)
    value = from_json(obj)
    assert isinstance(value, dict)
    return value


def _escape_nul(obj: Any) -> Any:
    if isinstance(obj, str):
        return {_NUL_KEY: obj.split("\x00")} if "\x00" in obj else obj
    if isinstance(obj, list):
        return [_escape_nul(item) for item in obj]
    if isinstance(obj, dict):
        # Field names are printable ASCII: only values can hold a NUL.
        return {key: _escape_nul(item) for key, item in obj.items()}
    return obj


def _unescape_nul(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and _NUL_KEY in obj:
        parts = obj[_NUL_KEY]
        if isinstance(parts, list) and all(isinstance(part, str) for part in parts):
            return "\x00".join(parts)
    return obj
