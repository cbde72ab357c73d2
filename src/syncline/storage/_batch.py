"""A batch of commits reduced to its final effect on documents and index entries.

A batch applies its commits in ts order, and several of them may touch the same
document or the same index key. A backend that writes set-wise (one statement
per kind of row, as PostgreSQL does) needs each row exactly once, in its final
state; :func:`collapse_batch` computes that state. Pure, so it is tested
without a server.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from syncline.storage._interface import CommitEntry, Document


@dataclass(frozen=True)
class FinalDocument:
    """The last write of one document in a batch."""

    table_number: int
    ts: int
    """The ts of the commit that wrote it last."""
    value: Document | None
    """None: the document ends deleted."""


@dataclass(frozen=True)
class CollapsedBatch:
    """Per document id and per (index id, key): the state after the whole batch."""

    documents: dict[str, FinalDocument]
    index_entries: dict[tuple[int, bytes], str | None]
    """The document id an entry points to at the end, or None when it ends absent."""


def collapse_batch(batch: Sequence[CommitEntry]) -> CollapsedBatch:
    """Replay ``batch`` in order and keep the final state of each row it touches.

    Within one write, removed keys go before added ones (as the SQLite backend
    applies them), so a document moved away from a key and back ends present,
    and a key added then removed by a later commit ends absent. Keys a write
    leaves unchanged (``old_key == new_key``) are not touched at all.
    """
    documents: dict[str, FinalDocument] = {}
    entries: dict[tuple[int, bytes], str | None] = {}
    for entry in batch:
        for write in entry.writes:
            documents[write.doc_id] = FinalDocument(write.table_number, entry.ts, write.new)
            moved = [c for c in write.index_changes if c.old_key != c.new_key]
            for change in moved:
                if change.old_key is not None:
                    entries[(change.index_id, change.old_key)] = None
            for change in moved:
                if change.new_key is not None:
                    entries[(change.index_id, change.new_key)] = write.doc_id
    return CollapsedBatch(documents, entries)
