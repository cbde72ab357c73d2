"""Commit requests and outcomes to and from their protobuf form (pure).

Everything that crosses the wire is checked here for shape (types, sizes,
well-formed intervals) and refused with InvalidWriteSetError; whether the
writes make sense for the catalog is checked by the txn service.
"""

from __future__ import annotations

import json
from typing import Any

from syncline._errors import (
    CatalogChangedError,
    FencedError,
    InvalidWriteSetError,
    OccConflictError,
    ProtocolError,
    SynclineError,
    UnavailableError,
)
from syncline.server import FunctionCall, parse_kind
from syncline.storage import DocumentWrite, IndexKeyChange
from syncline.txn import CommitOutcome, CommitRequest, Interval, ReadSet
from syncline.v1 import syncline_pb2 as pb
from syncline.values import check_value, from_json, to_json

MAX_WRITES = 16_000
MAX_INTERVALS = 100_000
MAX_KEY_BYTES = 64 * 1024
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
"""gRPC message limit between runners and the txn leader: one commit may write
thousands of documents of up to 1 MiB each."""
TXN_GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]


def request_to_proto(request: CommitRequest) -> pb.CommitRequest:
    reads = [
        pb.IndexRead(
            index_id=index_id,
            intervals=[pb.KeyInterval(start=i.start, end=i.end) for i in intervals],
        )
        for index_id, intervals in request.read_set.intervals.items()
    ]
    writes = [
        pb.DocumentWrite(
            id=w.doc_id,
            table_number=w.table_number,
            new_value_json=json.dumps(to_json(w.new), separators=(",", ":"))
            if w.new is not None
            else None,
            index_changes=[
                pb.IndexKeyChange(index_id=c.index_id, old_key=c.old_key, new_key=c.new_key)
                for c in w.index_changes
            ],
        )
        for w in request.writes
    ]
    return pb.CommitRequest(
        snapshot_ts=request.snapshot_ts,
        reads=reads,
        writes=writes,
        idempotency_key=request.idempotency_key or "",
        result_json=request.result_json,
        catalog_version=request.catalog_version or 0,
        fresh_key=request.fresh_key,
        traceparent=request.traceparent,
    )


def _key(value: bytes, what: str) -> bytes:
    if len(value) > MAX_KEY_BYTES:
        raise InvalidWriteSetError(f"{what}: key of {len(value)} bytes exceeds {MAX_KEY_BYTES}")
    return value


def request_from_proto(message: pb.CommitRequest) -> CommitRequest:
    """Decode and shape-check a commit; raises InvalidWriteSetError naming the problem."""
    if len(message.writes) > MAX_WRITES:
        raise InvalidWriteSetError(f"a commit may write at most {MAX_WRITES} documents")
    read_set = ReadSet()
    count = 0
    for read in message.reads:
        for interval in read.intervals:
            count += 1
            if count > MAX_INTERVALS:
                raise InvalidWriteSetError(f"a read set may hold at most {MAX_INTERVALS} intervals")
            start = _key(interval.start, f"reads[index {read.index_id}]")
            end = (
                _key(interval.end, f"reads[index {read.index_id}]")
                if interval.HasField("end")
                else None
            )
            if end is not None and end < start:
                raise InvalidWriteSetError(
                    f"reads[index {read.index_id}]: interval end sorts before its start"
                )
            read_set.add(read.index_id, Interval(start, end))
    writes: list[DocumentWrite] = []
    seen: set[str] = set()
    for i, write in enumerate(message.writes):
        where = f"writes[{i}]"
        if not write.id or write.id in seen:
            raise InvalidWriteSetError(f"{where}: missing or repeated document id {write.id!r}")
        seen.add(write.id)
        new: dict[str, Any] | None = None
        if write.HasField("new_value_json"):
            new = _document(write.new_value_json, where)
        changes = tuple(
            IndexKeyChange(
                c.index_id,
                _key(c.old_key, where) if c.HasField("old_key") else None,
                _key(c.new_key, where) if c.HasField("new_key") else None,
            )
            for c in write.index_changes
        )
        writes.append(DocumentWrite(write.id, write.table_number, new, changes))
    return CommitRequest(
        snapshot_ts=message.snapshot_ts,
        read_set=read_set,
        writes=writes,
        idempotency_key=message.idempotency_key or None,
        result_json=message.result_json or "null",
        catalog_version=message.catalog_version or None,
        fresh_key=message.fresh_key and bool(message.idempotency_key),
        traceparent=message.traceparent,
    )


def _document(text: str, where: str) -> dict[str, Any]:
    try:
        value = from_json(json.loads(text))
        check_value(value, path=where)
    except (ValueError, SynclineError) as exc:
        detail = exc.message if isinstance(exc, SynclineError) else "not valid JSON"
        raise InvalidWriteSetError(f"{where}: document is malformed: {detail}") from exc
    if not isinstance(value, dict):
        raise InvalidWriteSetError(f"{where}: a document must be an object")
    return value


def response_to_proto(result: CommitOutcome | SynclineError) -> pb.CommitResponse:
    """One request's answer: committed, an OCC conflict, or why it was not committed."""
    if isinstance(result, CommitOutcome):
        return pb.CommitResponse(committed=outcome_to_proto(result))
    if isinstance(result, OccConflictError):
        changed = isinstance(result, CatalogChangedError)
        return pb.CommitResponse(
            conflict=pb.Conflict(reason=result.message, catalog_changed=changed)
        )
    return pb.CommitResponse(
        error=pb.CommitError(code=result.code, message=result.message, retryable=result.retryable)
    )


def response_from_proto(message: pb.CommitResponse) -> CommitOutcome | SynclineError:
    """The inverse of response_to_proto: the outcome, or the error to raise (or retry)."""
    which = message.WhichOneof("outcome")
    if which == "committed":
        return outcome_from_proto(message.committed)
    if which == "conflict":
        if message.conflict.catalog_changed:
            return CatalogChangedError(message.conflict.reason)
        return OccConflictError(message.conflict.reason)
    if which == "error":
        fallback = UnavailableError if message.error.retryable else SynclineError
        return _ERRORS_BY_CODE.get(message.error.code, fallback)(message.error.message)
    return SynclineError("the txn service answered a commit with no outcome")


_ERRORS_BY_CODE: dict[str, type[SynclineError]] = {
    error.code: error for error in (InvalidWriteSetError, FencedError, UnavailableError)
}


def outcome_to_proto(outcome: CommitOutcome) -> pb.Committed:
    return pb.Committed(
        ts=outcome.ts, result_json=outcome.result_json, deduplicated=outcome.deduplicated
    )


def outcome_from_proto(message: pb.Committed) -> CommitOutcome:
    return CommitOutcome(message.ts, message.result_json, message.deduplicated)


def call_from_proto(message: pb.CallRequest) -> FunctionCall:
    """A forwarded HTTP API call; raises ProtocolError for a bad kind or args."""
    kind = parse_kind(message.kind)
    try:
        args = json.loads(message.args_json) if message.args_json else {}
    except ValueError:
        raise ProtocolError("args are not JSON") from None
    authorization = message.authorization if message.HasField("authorization") else None
    return FunctionCall(message.path, kind, args, authorization)


def call_to_proto(call: FunctionCall) -> pb.CallRequest:
    return pb.CallRequest(
        path=call.path,
        kind=call.kind.value if call.kind is not None else "",
        args_json=json.dumps(call.args, separators=(",", ":")),
        authorization=call.authorization,
    )
