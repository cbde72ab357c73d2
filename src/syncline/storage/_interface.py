"""The storage interface every backend implements (SQLite now, PostgreSQL next).

Storage holds the latest version of each document, the index entries, the
commit log and the catalog. Reads happen in a :class:`Snapshot`, a consistent
view that knows its ts; writes arrive as whole batches of commits from the
committer and are durable when ``write_batch`` returns.

A backend may also offer :class:`CommitNotifier`, an optional capability: a
stream of wake-ups as commits land (PostgreSQL ``LISTEN``). Readers without it
(or between wake-ups) poll ``max_ts``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

Document = dict[str, Any]


@dataclass(frozen=True)
class TableMeta:
    table_number: int
    name: str


@dataclass(frozen=True)
class IndexMeta:
    """An index as stored; ``key_fields`` are the fields its keys encode, in order."""

    index_id: int
    table_number: int
    name: str
    fields: tuple[str, ...]

    @property
    def key_fields(self) -> tuple[str, ...]:
        if self.name == "by_id":
            return ("_id",)
        return (*self.fields, "_creationTime", "_id")


@dataclass(frozen=True)
class IndexKeyChange:
    """One index entry a write removes (``old_key``) and/or adds (``new_key``)."""

    index_id: int
    old_key: bytes | None
    new_key: bytes | None


@dataclass(frozen=True)
class DocumentWrite:
    """A written document: ``new`` None is a delete, ``old`` None an insert."""

    doc_id: str
    table_number: int
    new: Document | None
    index_changes: tuple[IndexKeyChange, ...]

    def written_keys(self) -> list[tuple[int, bytes]]:
        keys: list[tuple[int, bytes]] = []
        for change in self.index_changes:
            if change.old_key is not None:
                keys.append((change.index_id, change.old_key))
            if change.new_key is not None and change.new_key != change.old_key:
                keys.append((change.index_id, change.new_key))
        return keys


@dataclass(frozen=True)
class IdempotencyRecord:
    """Recorded with a commit so a retried request returns the first outcome."""

    key: str
    result_json: str


@dataclass(frozen=True)
class CommitEntry:
    """One commit: its ts, its writes, and the request key it answers."""

    ts: int
    writes: tuple[DocumentWrite, ...]
    idempotency: IdempotencyRecord | None = None
    traceparent: str = ""
    """The committing call's W3C trace context ("" untraced), kept in the commit log
    so every node's re-runs of its results link to its trace."""


@dataclass(frozen=True)
class CommitLogEntry:
    """A commit as the commit log keeps it: ts and written (index id, key) pairs."""

    ts: int
    keys: tuple[tuple[int, bytes], ...]
    traceparent: str = ""
    """The committing call's trace context ("" untraced)."""


@dataclass
class Catalog:
    """Tables and indexes by name and number."""

    tables: dict[str, TableMeta] = field(default_factory=dict)
    indexes: dict[int, list[IndexMeta]] = field(default_factory=dict)

    def table_by_number(self, number: int) -> TableMeta | None:
        for table in self.tables.values():
            if table.table_number == number:
                return table
        return None

    def index(self, table_number: int, name: str) -> IndexMeta | None:
        for index in self.indexes.get(table_number, []):
            if index.name == name:
                return index
        return None


class Snapshot(Protocol):
    """A consistent read view at ``ts``: every commit <= ts and nothing after."""

    @property
    def ts(self) -> int: ...

    async def get(self, doc_id: str) -> Document | None: ...

    async def scan(
        self, index_id: int, start: bytes, end: bytes | None, *, descending: bool, limit: int
    ) -> list[tuple[bytes, Document]]:
        """Entries of one index with start <= key < end, in key order, at most limit."""
        ...

    async def commits_after(self, ts: int, *, limit: int) -> list[CommitLogEntry]: ...

    async def table_documents(self, table_number: int) -> list[Document]: ...


class Storage(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def snapshot(self) -> SnapshotContext: ...

    async def max_ts(self) -> int: ...

    async def commits_after(self, ts: int, *, limit: int) -> list[CommitLogEntry]:
        """Commit-log rows after ``ts``, oldest first, as committed now (one cheap
        read, no snapshot): how a follower learns what a notified commit wrote."""
        ...

    async def prune(self, *, commit_log_before_ts: int, idempotency_before_ts: int) -> int:
        """Delete commit-log rows and request keys older than the given ts.

        The newest commit-log row always stays (a snapshot's ts is the newest
        row's). Returns the number of rows deleted.
        """
        ...

    async def load_catalog(self) -> Catalog: ...

    async def write_batch(self, batch: Sequence[CommitEntry], *, epoch: int | None = None) -> None:
        """Persist commits atomically and durably, in order.

        With ``epoch``, the batch commits only if the stored leader epoch still
        equals it (checked inside the same transaction); otherwise nothing is
        written and FencedError is raised.
        """
        ...

    async def acquire_epoch(self) -> int:
        """Increment the stored leader epoch and return it: fences every older leader."""
        ...

    async def find_idempotent_many(self, keys: Sequence[str]) -> dict[str, tuple[int, str]]:
        """The (ts, result JSON) recorded for each of ``keys`` that has one: one round trip."""
        ...

    async def find_idempotent(self, key: str) -> tuple[int, str] | None:
        """The (ts, result JSON) recorded for a request key, if any."""
        ...

    async def create_table(self, name: str) -> TableMeta: ...

    async def create_index(
        self,
        table_number: int,
        name: str,
        fields: tuple[str, ...],
        entries: Sequence[tuple[bytes, str]],
    ) -> IndexMeta:
        """Create an index and its entries (``(key, doc_id)``) in one transaction."""
        ...

    async def drop_index(self, index_id: int) -> None: ...

    async def get_meta(self, key: str) -> str | None: ...

    async def set_meta(self, key: str, value: str, *, epoch: int | None = None) -> None:
        """Store ``value`` under ``key``. With ``epoch``, only while that leader epoch is
        current (else FencedError and nothing is written), as ``write_batch``."""
        ...


@runtime_checkable
class CommitNotifier(Protocol):
    """Optional storage capability: wake-ups as commits become visible.

    Check for it with ``isinstance(storage, CommitNotifier)``.
    """

    def commit_notifications(self) -> AsyncGenerator[int, None]:
        """Yield a ts whenever commits up to it are visible to new snapshots.

        Only a wake-up: a notification may be coalesced, lost across a
        reconnect (the iterator then yields the current max ts), or arrive for a
        ts already seen. The iterator reconnects by itself and ends only when
        closed.
        """
        ...


class SnapshotContext(Protocol):
    async def __aenter__(self) -> Snapshot: ...

    async def __aexit__(self, *exc: object) -> None: ...
