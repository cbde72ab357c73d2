"""A transaction over one snapshot: records what it read, buffers what it writes.

Reads see the transaction's own writes. Every read is recorded as an index
interval; a scan records only the part it actually consumed, so ``take(5)``
is not invalidated by a write past its fifth row.
"""

from __future__ import annotations

import copy
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from syncline._errors import DocumentNotFoundError, LimitExceededError, ValidationError
from syncline.database._limits import TransactionLimits
from syncline.database._model import (
    UNSET,
    DataModel,
    TableInfo,
    check_user_fields,
    index_key,
)
from syncline.schema import BY_ID
from syncline.storage import Document, DocumentWrite, IndexKeyChange, IndexMeta, Snapshot
from syncline.txn import Interval, ReadSet
from syncline.values import encode_index_key, key_successor

_FIRST_PAGE = 32
_MAX_PAGE = 1024


@dataclass
class _PendingWrite:
    table: TableInfo
    old: Document | None
    new: Document | None


DEFAULT_LIMITS = TransactionLimits()


T = TypeVar("T")


class IoClock(Protocol):
    """A running time limit that storage waits do not count against."""

    def pause(self) -> None: ...

    def resume(self) -> None: ...


class ReadOnlyError(ValidationError):
    code = "ReadOnly"


class Transaction:
    """One function execution's view of the database."""

    def __init__(
        self,
        snapshot: Snapshot,
        model: DataModel,
        *,
        read_only: bool,
        limits: TransactionLimits = DEFAULT_LIMITS,
    ) -> None:
        self.snapshot = snapshot
        self.model = model
        self.read_only = read_only
        self.limits = limits
        self.reads = ReadSet()
        self.documents_read = 0
        self._written_bytes: dict[str, int] = {}
        self._written_total = 0
        self.io_seconds = 0.0
        """Time spent waiting for storage (not the function's own time)."""
        self.io_clock: IoClock | None = None
        """Paused while the transaction waits for storage, so a time limit leaves
        those waits out (even one that lasts, as while the database restarts)."""
        self._io_depth = 0
        self._writes: dict[str, _PendingWrite] = {}
        self._assumed: dict[str, Document] = {}
        self.read_ts: int | None = None
        """The oldest snapshot a document was taken from (see ``assume``), if any."""
        self._write_version = 0
        """Bumped on every write, so scans in progress notice new writes."""

    # -- reads ---------------------------------------------------------------

    async def get(self, doc_id: object) -> Document | None:
        table = self.model.require_id(doc_id, what="db.get")
        assert isinstance(doc_id, str)
        if table is None:
            return None
        by_id = table.indexes[BY_ID]
        key = encode_index_key([doc_id])
        self._read_interval(by_id.index_id, Interval(key, key_successor(key)))
        pending = self._writes.get(doc_id)
        if pending is not None:
            return copy.deepcopy(pending.new)
        assumed = self._assumed.get(doc_id)
        if assumed is not None:
            return copy.deepcopy(assumed)
        self._read_document()
        doc = await self._storage(self.snapshot.get(doc_id))
        if doc is not None and doc.get("_id") != doc_id:
            return None
        return doc

    def assume(self, doc: Document, ts: int) -> None:
        """Read ``doc`` as it was at ts ``ts`` (an earlier snapshot) without reading it.

        The commit is then checked as of ``ts``: if anything this transaction read
        changed after ``ts``, it conflicts and re-runs. Reads made later at a newer
        snapshot stay valid under that stricter check.
        """
        table = self.model.require_id(doc["_id"], what="assume")
        assert table is not None
        key = encode_index_key([doc["_id"]])
        self.reads.add(table.indexes[BY_ID].index_id, Interval(key, key_successor(key)))
        self._assumed[str(doc["_id"])] = copy.deepcopy(doc)
        self.read_ts = ts if self.read_ts is None else min(self.read_ts, ts)

    async def scan(
        self, index: IndexMeta, start: bytes, end: bytes | None, *, descending: bool
    ) -> AsyncIterator[tuple[bytes, Document]]:
        """Entries of ``index`` in ``[start, end)`` merged with this transaction's writes.

        Writes made while the scan is being consumed are seen too: stored rows are
        checked against the writes when yielded, and the pending (written) rows
        beyond the last yielded key are recomputed whenever the writes changed.
        """
        recorded: Interval | None = None
        last: bytes | None = None

        def beyond(key: bytes) -> bool:
            return last is None or (key < last if descending else key > last)

        page_start, page_end = start, end
        page_size = _FIRST_PAGE
        exhausted = False
        buffer: list[tuple[bytes, Document]] = []
        pending: list[tuple[bytes, Document]] = []
        pending_version = -1
        while True:
            if pending_version != self._write_version:
                pending = [
                    kv
                    for kv in self._pending_in_range(index, start, end, descending)
                    if beyond(kv[0])
                ]
                pending_version = self._write_version
            if not buffer and not exhausted:
                rows = await self._storage(
                    self.snapshot.scan(
                        index.index_id, page_start, page_end, descending=descending, limit=page_size
                    )
                )
                exhausted = len(rows) < page_size
                if rows:
                    if descending:
                        page_end = rows[-1][0]
                    else:
                        page_start = key_successor(rows[-1][0])
                page_size = min(page_size * 2, _MAX_PAGE)
                buffer = rows[::-1]  # pop() from the end, in scan order
            while buffer and buffer[-1][1]["_id"] in self._writes:
                buffer.pop()  # written by this transaction: its pending version counts
            if not buffer and not exhausted:
                continue
            next_stored = buffer[-1] if buffer else None
            next_pending = pending[-1] if pending else None
            if next_stored is None and next_pending is None:
                break
            take_pending = next_stored is None or (
                next_pending is not None
                and (
                    next_pending[0] > next_stored[0]
                    if descending
                    else next_pending[0] < next_stored[0]
                )
            )
            key, doc = pending.pop() if take_pending else buffer.pop()
            if not take_pending:
                self._read_document()
            last = key
            if descending:
                if recorded is None:
                    recorded = self._read_interval(index.index_id, Interval(key, end))
                recorded.start = key
            else:
                if recorded is None:
                    recorded = self._read_interval(index.index_id, Interval(start, None))
                recorded.end = key_successor(key)
            yield key, doc
        # Reached the end of the range: the whole range was read.
        if recorded is None:
            self._read_interval(index.index_id, Interval(start, end))
        elif descending:
            recorded.start = start
        else:
            recorded.end = end

    async def _storage(self, call: Awaitable[T]) -> T:
        """Await a storage call with the time limit's clock paused."""
        clock = self.io_clock
        self._io_depth += 1
        if clock is not None and self._io_depth == 1:
            clock.pause()
        started = time.monotonic()
        try:
            return await call
        finally:
            self._io_depth -= 1
            if self._io_depth == 0:
                self.io_seconds += time.monotonic() - started
                if clock is not None:
                    clock.resume()

    def _read_interval(self, index_id: int, interval: Interval) -> Interval:
        if len(self.reads) >= self.limits.max_read_intervals:
            raise LimitExceededError(
                f"a function may read at most {self.limits.max_read_intervals} index ranges "
                "(each db.get and each query is one); read fewer, larger ranges"
            )
        return self.reads.add(index_id, interval)

    def _read_document(self) -> None:
        self.documents_read += 1
        if self.documents_read > self.limits.max_read_documents:
            raise LimitExceededError(
                f"a function may read at most {self.limits.max_read_documents} documents; "
                "use an index range, take() or paginate()"
            )

    def _pending_in_range(
        self, index: IndexMeta, start: bytes, end: bytes | None, descending: bool
    ) -> list[tuple[bytes, Document]]:
        """This transaction's written documents in the range, last-to-yield first."""
        found: list[tuple[bytes, Document]] = []
        for pending in self._writes.values():
            if pending.new is None or pending.table.meta.table_number != index.table_number:
                continue
            key = index_key(index, pending.new)
            if start <= key and (end is None or key < end):
                found.append((key, copy.deepcopy(pending.new)))
        found.sort(key=lambda kv: kv[0], reverse=not descending)
        return found

    # -- writes --------------------------------------------------------------

    def _check_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyError("queries are read-only; write from a mutation")
        if len(self._writes) >= self.limits.max_write_documents:
            raise LimitExceededError(
                f"a function may write at most {self.limits.max_write_documents} documents"
            )

    def _count_written(self, doc_id: str, size: int) -> None:
        """``size``: the bytes of the document's new version (0 when deleted)."""
        total = self._written_total - self._written_bytes.get(doc_id, 0) + size
        if total > self.limits.max_write_bytes:
            raise LimitExceededError(
                f"a function may write at most {self.limits.max_write_bytes} bytes of documents"
            )
        self._written_bytes[doc_id] = size
        self._written_total = total

    async def insert(self, table: TableInfo, value: object, *, now_ms: float | None) -> str:
        self._check_writable()
        body = check_user_fields(value, path=f"db.insert({table.name!r})")
        doc = self.model.new_document(table, copy.deepcopy(body), now_ms=now_ms)
        size = self.model.check_document(table, doc, path=table.name)
        self._count_written(doc["_id"], size)
        self._writes[doc["_id"]] = _PendingWrite(table, None, doc)
        self._write_version += 1
        return str(doc["_id"])

    async def _existing(self, doc_id: object, what: str) -> tuple[TableInfo, Document]:
        self._check_writable()
        table = self.model.require_id(doc_id, what=what)
        doc = await self.get(doc_id) if table is not None else None
        if table is None or doc is None:
            raise DocumentNotFoundError(f"{what}: document {doc_id!r} does not exist")
        return table, doc

    async def patch(self, doc_id: object, fields: object) -> None:
        table, doc = await self._existing(doc_id, "db.patch")
        patch = check_user_fields(fields, path="db.patch", allow_system=True)
        new = dict(doc)
        for key, value in patch.items():
            if key in ("_id", "_creationTime"):
                if value != doc[key]:
                    raise ValidationError(f"db.patch: system field {key!r} cannot be changed")
                continue
            if isinstance(key, str) and key.startswith("_"):
                raise ValidationError(f"db.patch: field {key!r} is reserved")
            if value is UNSET:
                new.pop(key, None)
            else:
                new[key] = copy.deepcopy(value)
        self._stage(table, doc, new)

    async def replace(self, doc_id: object, value: object) -> None:
        table, doc = await self._existing(doc_id, "db.replace")
        body = check_user_fields(value, path="db.replace", allow_system=True)
        for key in ("_id", "_creationTime"):
            if key in body and body[key] != doc[key]:
                raise ValidationError(f"db.replace: system field {key!r} cannot be changed")
        new = {k: copy.deepcopy(v) for k, v in body.items() if k not in ("_id", "_creationTime")}
        for key in new:
            if key.startswith("_"):
                raise ValidationError(f"db.replace: field {key!r} is reserved")
        self._stage(table, doc, {"_id": doc["_id"], "_creationTime": doc["_creationTime"], **new})

    async def delete(self, doc_id: object) -> None:
        table, doc = await self._existing(doc_id, "db.delete")
        self._stage(table, doc, None)

    def _stage(self, table: TableInfo, current: Document, new: Document | None) -> None:
        size = self.model.check_document(table, new, path=table.name) if new is not None else 0
        doc_id = current["_id"]
        self._count_written(doc_id, size)
        earlier = self._writes.get(doc_id)
        old = earlier.old if earlier is not None else current
        self._write_version += 1
        if earlier is not None and earlier.old is None and new is None:
            # Inserted and deleted in the same transaction: nothing to write.
            del self._writes[doc_id]
            return
        self._writes[doc_id] = _PendingWrite(table, old, new)

    def has_writes(self) -> bool:
        return bool(self._writes)

    def document_writes(self) -> list[DocumentWrite]:
        writes: list[DocumentWrite] = []
        for doc_id, pending in self._writes.items():
            changes = tuple(
                IndexKeyChange(index.index_id, old_key, new_key)
                for index, old_key, new_key in self.model.index_changes(
                    pending.table, pending.old, pending.new
                )
            )
            writes.append(
                DocumentWrite(doc_id, pending.table.meta.table_number, pending.new, changes)
            )
        return writes
