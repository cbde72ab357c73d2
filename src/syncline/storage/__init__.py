"""Storage backends behind one interface: SQLite (embedded) and PostgreSQL (cluster)."""

from syncline.storage._deferred import DeferredSnapshot
from syncline.storage._interface import (
    Catalog,
    CommitEntry,
    CommitLogEntry,
    CommitNotifier,
    Document,
    DocumentWrite,
    IdempotencyRecord,
    IndexKeyChange,
    IndexMeta,
    Snapshot,
    SnapshotContext,
    Storage,
    TableMeta,
)
from syncline.storage._postgres import PostgresStorage
from syncline.storage._replication import (
    ReplicaStatus,
    add_replica,
    ensure_publication,
    pause_replica,
    promote_replica,
    remove_replica,
    replica_status,
)
from syncline.storage._sqlite import SqliteStorage

__all__ = [
    "Catalog",
    "CommitEntry",
    "CommitLogEntry",
    "CommitNotifier",
    "DeferredSnapshot",
    "Document",
    "DocumentWrite",
    "IdempotencyRecord",
    "IndexKeyChange",
    "IndexMeta",
    "PostgresStorage",
    "ReplicaStatus",
    "Snapshot",
    "SnapshotContext",
    "SqliteStorage",
    "Storage",
    "TableMeta",
    "add_replica",
    "ensure_publication",
    "pause_replica",
    "promote_replica",
    "remove_replica",
    "replica_status",
]
