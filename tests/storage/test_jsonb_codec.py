"""Documents as jsonb text: Convex JSON, with U+0000 escaped. Pure, no server."""

from __future__ import annotations

import json
import math

from syncline.storage._jsonb import decode_jsonb_document, encode_jsonb_document
from syncline.values import json_dumps_canonical, to_json


def test_a_document_without_nul_is_plain_convex_json() -> None:
    doc = {"_id": "x", "n": 1, "f": -0.0, "b": b"\x00", "s": "é\x01"}
    text = encode_jsonb_document(doc)
    assert json.loads(text) == to_json(doc)
    assert json_dumps_canonical(to_json(decode_jsonb_document(text))) == json_dumps_canonical(
        to_json(doc)
    )


def test_nul_in_strings_is_escaped_and_restored() -> None:
    doc = {"_id": "x", "s": "a\x00b", "deep": [{"t": "\x00"}, "\x00\x00"], "plain": "$nul"}
    text = encode_jsonb_document(doc)
    assert "\\u0000" not in text
    assert json.loads(text)["s"] == {"$nul": ["a", "b"]}
    assert decode_jsonb_document(text) == doc


def test_text_that_mentions_the_escape_decodes_unchanged() -> None:
    doc = {"_id": "x", "s": "$nul", "t": '{"$nul": ["a"]}', "f": math.inf}
    assert decode_jsonb_document(encode_jsonb_document(doc)) == doc
