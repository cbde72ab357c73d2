"""Commit requests survive the trip through protobuf; malformed ones are refused."""

from __future__ import annotations

import pytest

from syncline._errors import InvalidWriteSetError
from syncline.cluster import request_from_proto, request_to_proto
from syncline.storage import DocumentWrite, IndexKeyChange
from syncline.txn import CommitRequest, Interval, ReadSet
from syncline.v1 import syncline_pb2 as pb


def _request() -> CommitRequest:
    reads = ReadSet()
    reads.add(3, Interval(b"\x06a\x00", b"\x06b\x00"))
    reads.add(3, Interval(b"", None))
    doc = {"_id": "abc", "_creationTime": 1.5, "n": 2**40, "b": b"\x00\xff", "f": float("inf")}
    writes = [
        DocumentWrite(
            "abc",
            7,
            doc,
            (IndexKeyChange(1, None, b"\x06abc\x00"), IndexKeyChange(2, b"\x01", b"\x02")),
        ),
        DocumentWrite("def", 7, None, (IndexKeyChange(1, b"\x06def\x00", None),)),
    ]
    return CommitRequest(42, reads, writes, "key-1", '{"ok":true}', catalog_version=9)


def test_round_trip() -> None:
    original = _request()
    decoded = request_from_proto(
        pb.CommitRequest.FromString(request_to_proto(original).SerializeToString())
    )
    assert decoded.snapshot_ts == 42 and decoded.idempotency_key == "key-1"
    assert decoded.result_json == '{"ok":true}' and decoded.catalog_version == 9
    assert [(i, iv.start, iv.end) for i, iv in decoded.read_set.items()] == [
        (3, b"\x06a\x00", b"\x06b\x00"),
        (3, b"", None),
    ]
    assert decoded.writes == original.writes


def test_no_key_and_no_catalog_version_decode_as_none() -> None:
    decoded = request_from_proto(request_to_proto(CommitRequest(1, ReadSet(), [])))
    assert decoded.idempotency_key is None and decoded.catalog_version is None


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda m: m.writes[0].ClearField("id"), "missing or repeated document id"),
        (lambda m: setattr(m.writes[1], "id", "abc"), "missing or repeated document id"),
        (lambda m: setattr(m.writes[0], "new_value_json", "{oops"), "not valid JSON"),
        (lambda m: setattr(m.writes[0], "new_value_json", "[1]"), "must be an object"),
        (lambda m: setattr(m.writes[0], "new_value_json", '{"$bad": 1}'), "document is malformed"),
        (lambda m: m.reads[0].intervals[0].__setattr__("end", b""), "end sorts before its start"),
    ],
)
def test_malformed_requests_are_refused(mutate: object, fragment: str) -> None:
    message = request_to_proto(_request())
    mutate(message)  # type: ignore[operator]
    with pytest.raises(InvalidWriteSetError, match=fragment):
        request_from_proto(message)
