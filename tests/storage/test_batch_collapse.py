"""Collapsing a batch to the final state of each row: pure, no server."""

from __future__ import annotations

from syncline.storage import CommitEntry, DocumentWrite, IndexKeyChange
from syncline.storage._batch import FinalDocument, collapse_batch

TABLE = 3
INDEX = 9


def write(
    doc_id: str, value: int | None, *changes: tuple[bytes | None, bytes | None]
) -> DocumentWrite:
    new = None if value is None else {"_id": doc_id, "v": float(value)}
    return DocumentWrite(
        doc_id, TABLE, new, tuple(IndexKeyChange(INDEX, old, key) for old, key in changes)
    )


def test_last_write_of_a_document_wins_with_its_ts() -> None:
    collapsed = collapse_batch(
        [
            CommitEntry(1, (write("a", 1, (None, b"1")),)),
            CommitEntry(2, (write("a", 2, (b"1", b"2")),)),
        ]
    )
    assert collapsed.documents == {"a": FinalDocument(TABLE, 2, {"_id": "a", "v": 2.0})}
    assert collapsed.index_entries == {(INDEX, b"1"): None, (INDEX, b"2"): "a"}


def test_key_moved_away_and_back_ends_present() -> None:
    collapsed = collapse_batch(
        [
            CommitEntry(1, (write("a", 1, (b"k", b"m")),)),
            CommitEntry(2, (write("a", 2, (b"m", b"k")),)),
        ]
    )
    assert collapsed.index_entries == {(INDEX, b"k"): "a", (INDEX, b"m"): None}


def test_insert_then_delete_ends_absent() -> None:
    collapsed = collapse_batch(
        [
            CommitEntry(1, (write("a", 1, (None, b"k")),)),
            CommitEntry(2, (write("a", None, (b"k", None)),)),
        ]
    )
    assert collapsed.documents == {"a": FinalDocument(TABLE, 2, None)}
    assert collapsed.index_entries == {(INDEX, b"k"): None}


def test_key_handed_from_one_document_to_another() -> None:
    # Within one commit: a leaves k, then b takes it; the reverse order in a later commit.
    collapsed = collapse_batch(
        [
            CommitEntry(1, (write("a", 1, (b"k", b"x")), write("b", 1, (b"y", b"k")))),
            CommitEntry(2, (write("b", 2, (b"k", b"z")), write("a", 2, (b"x", b"k")))),
        ]
    )
    assert collapsed.index_entries == {
        (INDEX, b"k"): "a",
        (INDEX, b"x"): None,
        (INDEX, b"y"): None,
        (INDEX, b"z"): "b",
    }


def test_unchanged_keys_are_not_touched() -> None:
    collapsed = collapse_batch([CommitEntry(1, (write("a", 1, (b"k", b"k")),))])
    assert collapsed.index_entries == {}
    assert set(collapsed.documents) == {"a"}
