"""Commit requests survive the trip through protobuf; malformed ones are refused."""

from __future__ import annotations

import pytest

from syncline._errors import (
    CatalogChangedError,
    FencedError,
    InvalidWriteSetError,
    OccConflictError,
    SynclineError,
    UnavailableError,
)
from syncline.cluster import request_from_proto, request_to_proto
from syncline.cluster._wire import response_from_proto, response_to_proto
from syncline.storage import DocumentWrite, IndexKeyChange
from syncline.txn import CommitOutcome, CommitRequest, Interval, ReadSet
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


def test_fresh_key_travels_only_with_a_key() -> None:
    fresh = CommitRequest(1, ReadSet(), [], "key-1", fresh_key=True)
    assert request_from_proto(request_to_proto(fresh)).fresh_key
    keyless = CommitRequest(1, ReadSet(), [], None, fresh_key=True)
    assert not request_from_proto(request_to_proto(keyless)).fresh_key


@pytest.mark.parametrize(
    "result",
    [
        CommitOutcome(7, '"r"', deduplicated=True),
        OccConflictError("a concurrent commit wrote data this transaction read"),
        CatalogChangedError("the tables or indexes changed while it ran"),
        InvalidWriteSetError("writes[0]: unknown table number 999"),
        FencedError("this committer was deposed; retry on the new leader"),
        UnavailableError("storage failed; the outcome is unknown"),
    ],
)
def test_each_commit_result_survives_the_wire(result: CommitOutcome | SynclineError) -> None:
    message = pb.CommitResponse.FromString(response_to_proto(result).SerializeToString())
    decoded = response_from_proto(message)
    assert type(decoded) is type(result)
    if isinstance(result, CommitOutcome):
        assert decoded == result
    else:
        assert isinstance(decoded, SynclineError) and decoded.message == result.message


def test_an_unknown_error_code_keeps_its_retryability() -> None:
    retryable = pb.CommitResponse(error=pb.CommitError(code="Later", message="m", retryable=True))
    assert isinstance(response_from_proto(retryable), UnavailableError)
    final = pb.CommitResponse(error=pb.CommitError(code="Odd", message="m", retryable=False))
    decoded = response_from_proto(final)
    assert type(decoded) is SynclineError and decoded.message == "m"
