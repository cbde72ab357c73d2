"""SQLite storage for embedded mode: WAL, ``synchronous=FULL`` (durable on ack).

Reads run on the event loop thread: a point lookup or a page of an index scan
costs microseconds, less than a thread hop. Each snapshot holds its own reader
connection inside one read transaction, which SQLite's WAL keeps consistent
while the writer commits. Writes (and their fsync) run on one writer thread, so
the loop keeps serving while a batch is made durable; group commit fills the
next batch meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from syncline._errors import FencedError
from syncline.storage._codec import (
    decode_commit_keys,
    decode_document,
    encode_commit_keys,
    encode_document,
)
from syncline.storage._interface import (
    Catalog,
    CommitEntry,
    CommitLogEntry,
    Document,
    IndexMeta,
    TableMeta,
)

T = TypeVar("T")

_MIGRATIONS: list[str] = [
    # 1: the initial layout.
    """
    CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE tables(table_number INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL);
    CREATE TABLE indexes(
        index_id INTEGER PRIMARY KEY, table_number INTEGER NOT NULL, name TEXT NOT NULL,
        fields TEXT NOT NULL, UNIQUE(table_number, name));
    CREATE TABLE documents(
        id TEXT PRIMARY KEY, table_number INTEGER NOT NULL, ts INTEGER NOT NULL,
        value TEXT NOT NULL);
    CREATE INDEX documents_by_table ON documents(table_number);
    CREATE TABLE index_entries(
        index_id INTEGER NOT NULL, key BLOB NOT NULL, id TEXT NOT NULL,
        PRIMARY KEY(index_id, key)) WITHOUT ROWID;
    CREATE TABLE commit_log(ts INTEGER PRIMARY KEY, writes BLOB NOT NULL);
    CREATE TABLE idempotency(key TEXT PRIMARY KEY, ts INTEGER NOT NULL, result TEXT NOT NULL);
    """,
]

_READER_POOL_SIZE = 16


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=10000")
    conn.execute("PRAGMA cache_size=-65536")
    return conn


class SqliteSnapshot:
    """A read transaction on one reader connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        conn.execute("BEGIN")
        row = conn.execute("SELECT COALESCE(MAX(ts), 0) FROM commit_log").fetchone()
        self.ts: int = row[0]

    async def get(self, doc_id: str) -> Document | None:
        row = self._conn.execute("SELECT value FROM documents WHERE id = ?", (doc_id,)).fetchone()
        return decode_document(row[0]) if row else None

    async def scan(
        self, index_id: int, start: bytes, end: bytes | None, *, descending: bool, limit: int
    ) -> list[tuple[bytes, Document]]:
        sql = (
            "SELECT e.key, d.value FROM index_entries e JOIN documents d ON d.id = e.id "
            "WHERE e.index_id = ? AND e.key >= ?"
        )
        params: list[Any] = [index_id, start]
        if end is not None:
            sql += " AND e.key < ?"
            params.append(end)
        sql += " ORDER BY e.key DESC LIMIT ?" if descending else " ORDER BY e.key LIMIT ?"
        params.append(limit)
        return [(k, decode_document(v)) for k, v in self._conn.execute(sql, params)]

    async def commits_after(self, ts: int, *, limit: int) -> list[CommitLogEntry]:
        rows = self._conn.execute(
            "SELECT ts, writes FROM commit_log WHERE ts > ? AND ts <= ? ORDER BY ts LIMIT ?",
            (ts, self.ts, limit),
        )
        return [CommitLogEntry(t, *decode_commit_keys(w)) for t, w in rows]

    async def table_documents(self, table_number: int) -> list[Document]:
        rows = self._conn.execute(
            "SELECT value FROM documents WHERE table_number = ?", (table_number,)
        )
        return [decode_document(v) for (v,) in rows]

    def end(self) -> None:
        self._conn.execute("COMMIT")


class _SnapshotContext:
    def __init__(self, storage: SqliteStorage) -> None:
        self._storage = storage
        self._conn: sqlite3.Connection | None = None
        self._snapshot: SqliteSnapshot | None = None

    async def __aenter__(self) -> SqliteSnapshot:
        conn = self._storage._acquire_reader()
        try:
            self._snapshot = SqliteSnapshot(conn)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._storage._release_reader(conn)
            raise
        self._conn = conn
        return self._snapshot

    async def __aexit__(self, *exc: object) -> None:
        assert self._conn is not None and self._snapshot is not None
        try:
            self._snapshot.end()
        finally:
            self._storage._release_reader(self._conn)


class SqliteStorage:
    """Storage in one SQLite file (``syncline.sqlite3`` in the data directory)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._writer: sqlite3.Connection | None = None
        self._readers: list[sqlite3.Connection] = []
        self._executor: ThreadPoolExecutor | None = None

    async def open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._writer = await self._on_writer(lambda: _connect(self._path))
        await self._on_writer(self._migrate)

    async def close(self) -> None:
        if self._executor is None:
            return
        writer = self._writer
        if writer is not None:
            await self._on_writer(writer.close)
        self._executor.shutdown(wait=True)
        self._executor = None
        self._writer = None
        for conn in self._readers:
            conn.close()
        self._readers.clear()

    async def _on_writer(self, fn: Any) -> Any:
        assert self._executor is not None, "storage is not open"
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def _migrate(self) -> None:
        conn = self._writer
        assert conn is not None
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(_MIGRATIONS[version:], start=version + 1):
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def _acquire_reader(self) -> sqlite3.Connection:
        return self._readers.pop() if self._readers else _connect(self._path)

    def _release_reader(self, conn: sqlite3.Connection) -> None:
        if len(self._readers) < _READER_POOL_SIZE:
            self._readers.append(conn)
        else:
            conn.close()

    def snapshot(self) -> _SnapshotContext:
        return _SnapshotContext(self)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        conn = self._acquire_reader()
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            self._release_reader(conn)

    async def max_ts(self) -> int:
        return int(self._read("SELECT COALESCE(MAX(ts), 0) FROM commit_log")[0][0])

    async def commits_after(self, ts: int, *, limit: int) -> list[CommitLogEntry]:
        rows = self._read(
            "SELECT ts, writes FROM commit_log WHERE ts > ? ORDER BY ts LIMIT ?", (ts, limit)
        )
        return [CommitLogEntry(t, *decode_commit_keys(w)) for t, w in rows]

    async def prune(self, *, commit_log_before_ts: int, idempotency_before_ts: int) -> int:
        def body(conn: sqlite3.Connection) -> int:
            deleted = conn.execute(
                "DELETE FROM commit_log WHERE ts < ? AND ts < (SELECT MAX(ts) FROM commit_log)",
                (commit_log_before_ts,),
            ).rowcount
            deleted += conn.execute(
                "DELETE FROM idempotency WHERE ts < ?", (idempotency_before_ts,)
            ).rowcount
            return int(deleted)

        result: int = await self._transaction(body)
        return result

    async def load_catalog(self) -> Catalog:
        catalog = Catalog()
        for number, name in self._read("SELECT table_number, name FROM tables"):
            catalog.tables[name] = TableMeta(number, name)
        for index_id, number, name, fields in self._read(
            "SELECT index_id, table_number, name, fields FROM indexes ORDER BY index_id"
        ):
            catalog.indexes.setdefault(number, []).append(
                IndexMeta(index_id, number, name, tuple(json.loads(fields)))
            )
        return catalog

    async def find_idempotent_many(self, keys: Sequence[str]) -> dict[str, tuple[int, str]]:
        found: dict[str, tuple[int, str]] = {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            for key, ts, result in self._read(
                f"SELECT key, ts, result FROM idempotency WHERE key IN ({marks})", chunk
            ):
                found[key] = (int(ts), str(result))
        return found

    async def find_idempotent(self, key: str) -> tuple[int, str] | None:
        rows = self._read("SELECT ts, result FROM idempotency WHERE key = ?", (key,))
        return (rows[0][0], rows[0][1]) if rows else None

    async def get_meta(self, key: str) -> str | None:
        rows = self._read("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    async def set_meta(self, key: str, value: str, *, epoch: int | None = None) -> None:
        def body(conn: sqlite3.Connection) -> None:
            _check_epoch(conn, epoch)
            conn.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

        await self._transaction(body)

    async def _transaction(self, body: Any) -> Any:
        def run() -> Any:
            conn = self._writer
            assert conn is not None
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = body(conn)
                conn.execute("COMMIT")
                return result
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        return await self._on_writer(run)

    async def acquire_epoch(self) -> int:
        def body(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT value FROM meta WHERE key = 'leader_epoch'").fetchone()
            epoch = (int(row[0]) if row else 0) + 1
            conn.execute(
                "INSERT INTO meta(key, value) VALUES ('leader_epoch', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (str(epoch),),
            )
            return epoch

        result: int = await self._transaction(body)
        return result

    async def write_batch(self, batch: Sequence[CommitEntry], *, epoch: int | None = None) -> None:
        def body(conn: sqlite3.Connection) -> None:
            _check_epoch(conn, epoch)
            for entry in batch:
                for write in entry.writes:
                    if write.new is None:
                        conn.execute("DELETE FROM documents WHERE id = ?", (write.doc_id,))
                    else:
                        conn.execute(
                            "INSERT OR REPLACE INTO documents(id, table_number, ts, value) "
                            "VALUES (?, ?, ?, ?)",
                            (
                                write.doc_id,
                                write.table_number,
                                entry.ts,
                                encode_document(write.new),
                            ),
                        )
                    # Old keys go before new ones, write by write, because a batch may
                    # move the same document twice.
                    moved = [c for c in write.index_changes if c.old_key != c.new_key]
                    conn.executemany(
                        "DELETE FROM index_entries WHERE index_id = ? AND key = ?",
                        [(c.index_id, c.old_key) for c in moved if c.old_key is not None],
                    )
                    conn.executemany(
                        "INSERT INTO index_entries(index_id, key, id) VALUES (?, ?, ?)",
                        [
                            (c.index_id, c.new_key, write.doc_id)
                            for c in moved
                            if c.new_key is not None
                        ],
                    )
                keys = [k for write in entry.writes for k in write.written_keys()]
                conn.execute(
                    "INSERT INTO commit_log(ts, writes) VALUES (?, ?)",
                    (entry.ts, encode_commit_keys(keys, entry.traceparent)),
                )
                if entry.idempotency is not None:
                    conn.execute(
                        "INSERT INTO idempotency(key, ts, result) VALUES (?, ?, ?)",
                        (entry.idempotency.key, entry.ts, entry.idempotency.result_json),
                    )

        await self._transaction(body)

    async def create_table(self, name: str) -> TableMeta:
        def body(conn: sqlite3.Connection) -> TableMeta:
            row = conn.execute("SELECT table_number FROM tables WHERE name = ?", (name,)).fetchone()
            if row:
                return TableMeta(row[0], name)
            number = conn.execute(
                "SELECT COALESCE(MAX(table_number), 0) + 1 FROM tables"
            ).fetchone()[0]
            conn.execute("INSERT INTO tables(table_number, name) VALUES (?, ?)", (number, name))
            return TableMeta(number, name)

        result: TableMeta = await self._transaction(body)
        return result

    async def create_index(
        self,
        table_number: int,
        name: str,
        fields: tuple[str, ...],
        entries: Sequence[tuple[bytes, str]],
    ) -> IndexMeta:
        def body(conn: sqlite3.Connection) -> IndexMeta:
            # Never reuse the id of a dropped index: code still holding the old
            # catalog must not find another index's entries under it.
            row = conn.execute("SELECT value FROM meta WHERE key = 'last_index_id'").fetchone()
            highest = conn.execute("SELECT COALESCE(MAX(index_id), 0) FROM indexes").fetchone()[0]
            index_id = max(int(row[0]) if row else 0, int(highest)) + 1
            conn.execute(
                "INSERT INTO meta(key, value) VALUES ('last_index_id', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (str(index_id),),
            )
            conn.execute(
                "INSERT INTO indexes(index_id, table_number, name, fields) VALUES (?, ?, ?, ?)",
                (index_id, table_number, name, json.dumps(list(fields))),
            )
            conn.executemany(
                "INSERT INTO index_entries(index_id, key, id) VALUES (?, ?, ?)",
                [(index_id, key, doc_id) for key, doc_id in entries],
            )
            return IndexMeta(index_id, table_number, name, fields)

        result: IndexMeta = await self._transaction(body)
        return result

    async def drop_index(self, index_id: int) -> None:
        def body(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM index_entries WHERE index_id = ?", (index_id,))
            conn.execute("DELETE FROM indexes WHERE index_id = ?", (index_id,))

        await self._transaction(body)


def _check_epoch(conn: sqlite3.Connection, epoch: int | None) -> None:
    """FencedError unless ``epoch`` (if given) is the current leader epoch."""
    if epoch is None:
        return
    row = conn.execute("SELECT value FROM meta WHERE key = 'leader_epoch'").fetchone()
    if row is None or int(row[0]) != epoch:
        raise FencedError(f"leader epoch {epoch} is no longer current")
