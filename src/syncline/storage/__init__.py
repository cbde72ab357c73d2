"""Storage backends behind one interface."""

from syncline.storage._interface import (
    Catalog,
    CommitEntry,
    CommitLogEntry,
    Document,
    DocumentWrite,
    IdempotencyRecord,
    IndexKeyChange,
    IndexMeta,
    Snapshot,
    Storage,
    TableMeta,
)
from syncline.storage._sqlite import SqliteStorage

__all__ = [
    "Catalog",
    "CommitEntry",
    "CommitLogEntry",
    "Document",
    "DocumentWrite",
    "IdempotencyRecord",
    "IndexKeyChange",
    "IndexMeta",
    "Snapshot",
    "SqliteStorage",
    "Storage",
    "TableMeta",
]
