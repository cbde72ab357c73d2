"""PostgreSQL storage for the cluster: the SQLite backend's behaviour, on a server.

Layout (§3): ``documents`` holds the latest version of each document as ``jsonb``
(Convex JSON, see ``_jsonb``), ``index_entries`` the index keys as ``bytea``
(PostgreSQL compares ``bytea`` bytewise, which is the key encoding's order),
``commit_log`` the written keys of each commit, ``leader_epoch`` the committer's
fencing token. The schema is created by versioned migrations under an advisory
lock, so concurrent starters apply each one exactly once.

A snapshot is a pooled connection inside a ``REPEATABLE READ READ ONLY``
transaction whose first statement reads ``max(commit_log.ts)``: batches commit
one at a time in ts order, so that transaction sees exactly the commits <= ts.

A batch is one statement, so one round trip and one transaction: its rows are
collapsed to their final state in Python, then written set-wise (``unnest`` of
one array per column) by data-modifying CTEs that all depend on the leader
epoch row, locked FOR SHARE only while it still holds the batch's epoch.
psycopg errors are translated here, once, by SQLSTATE class.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import select
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from typing import Any, LiteralString

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout
from psycopg_pool.base import AttemptWithBackoff

from syncline._errors import ConfigError, FencedError, SynclineError, UnavailableError
from syncline.storage._batch import collapse_batch
from syncline.storage._codec import decode_commit_keys, encode_commit_keys
from syncline.storage._interface import (
    Catalog,
    CommitEntry,
    CommitLogEntry,
    Document,
    IndexMeta,
    TableMeta,
)
from syncline.storage._jsonb import decode_jsonb_document, encode_jsonb_document

log = logging.getLogger(__name__)

#: ``pg_advisory_xact_lock`` key serialising migrations ("SYNCLINE" in ASCII).
_MIGRATION_LOCK_KEY = 0x53594E434C494E45
#: Index entries per statement when an index is backfilled.
_BACKFILL_CHUNK = 10_000
#: First wait before reconnecting the LISTEN connection; doubles up to the caller's maximum.
_LISTEN_RETRY_START_SECONDS = 0.05

# psycopg_pool replaces a lost connection after 1 s, then 2, 4, 8 s..., with no
# setting for it: after a PostgreSQL restart of a few seconds, commits waited up
# to twice the outage for the next attempt. Every pool of this process starts at
# 0.1 s, each wait 1.5 times the last (past 1 s after 6 attempts).
AttemptWithBackoff.INITIAL_DELAY = 0.1
AttemptWithBackoff.DELAY_BACKOFF = 1.5

_MIGRATIONS: list[tuple[int, LiteralString]] = [
    (
        1,
        """
        CREATE TABLE meta(key text PRIMARY KEY, value text NOT NULL);
        CREATE TABLE tables(table_number integer PRIMARY KEY, name text NOT NULL UNIQUE);
        CREATE TABLE indexes(
            index_id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            table_number integer NOT NULL,
            name text NOT NULL,
            fields jsonb NOT NULL,
            UNIQUE (table_number, name));
        CREATE TABLE documents(
            id text PRIMARY KEY,
            table_number integer NOT NULL,
            ts bigint NOT NULL,
            value jsonb NOT NULL);
        CREATE INDEX documents_by_table ON documents(table_number);
        CREATE TABLE index_entries(
            index_id integer NOT NULL,
            key bytea NOT NULL,
            id text NOT NULL,
            PRIMARY KEY (index_id, key));
        CREATE TABLE commit_log(ts bigint PRIMARY KEY, writes bytea NOT NULL);
        CREATE TABLE idempotency(key text PRIMARY KEY, ts bigint NOT NULL, result text NOT NULL);
        CREATE INDEX idempotency_by_ts ON idempotency(ts);
        CREATE TABLE leader_epoch(
            singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
            epoch bigint NOT NULL);
        INSERT INTO leader_epoch(epoch) VALUES (0);
        """,
    ),
    (
        2,
        # Every commit-log row wakes the sync nodes' subscription loops. A row
        # trigger, enabled ALWAYS, also fires where rows arrive by logical
        # replication (the apply worker runs as a replica, which skips ordinary
        # triggers and never fires statement triggers).
        """
        CREATE FUNCTION syncline_notify_commit() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('syncline_commits', NEW.ts::text);
            RETURN NULL;
        END
        $$;
        CREATE TRIGGER commit_log_notify AFTER INSERT ON commit_log
            FOR EACH ROW EXECUTE FUNCTION syncline_notify_commit();
        ALTER TABLE commit_log ENABLE ALWAYS TRIGGER commit_log_notify;
        """,
    ),
]

#: The channel the commit-log trigger notifies, with the commit's ts as payload.
COMMIT_CHANNEL = "syncline_commits"

_SCAN_SQL: dict[tuple[bool, bool], LiteralString] = {
    (descending, bounded): (
        "SELECT e.key, d.value::text FROM index_entries e JOIN documents d ON d.id = e.id "
        "WHERE e.index_id = %(index_id)s AND e.key >= %(start)s"
        + (" AND e.key < %(end)s" if bounded else "")
        + (" ORDER BY e.key DESC" if descending else " ORDER BY e.key")
        + " LIMIT %(limit)s"
    )
    for descending in (False, True)
    for bounded in (False, True)
}

_BEGIN_SNAPSHOT = (
    "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT COALESCE(MAX(ts), 0) FROM commit_log"
)

# A whole batch in one statement: the server runs it to COMMIT without waiting
# for the client, so a leader that stalls (SIGSTOP, a long pause) can never sit
# inside the transaction holding the epoch row. Every write joins ``fence``, the
# leader_epoch row locked FOR SHARE when it still holds the batch's epoch: with
# another epoch, fence is empty and nothing is written. The lock is taken before
# any row is written and held to COMMIT, so acquire_epoch's UPDATE waits for a
# batch in flight. Rows are collapsed first, so no row is touched twice.
_WRITE_BATCH = """
WITH fence AS (
    SELECT epoch FROM leader_epoch
    WHERE %(epoch)s::bigint IS NULL OR epoch = %(epoch)s::bigint
    FOR SHARE
),
deleted_documents AS (
    DELETE FROM documents d USING fence WHERE d.id = ANY(%(deleted)s::text[])
),
upserted_documents AS (
    INSERT INTO documents(id, table_number, ts, value)
    SELECT u.id, u.table_number, u.ts, u.value::jsonb
    FROM fence, unnest(%(doc_ids)s::text[], %(doc_tables)s::integer[], %(doc_ts)s::bigint[],
                       %(doc_values)s::text[]) AS u(id, table_number, ts, value)
    ON CONFLICT (id) DO UPDATE SET
        table_number = excluded.table_number, ts = excluded.ts, value = excluded.value
),
deleted_keys AS (
    DELETE FROM index_entries e
    USING fence, unnest(%(absent_indexes)s::integer[], %(absent_keys)s::bytea[]) AS a(index_id, key)
    WHERE e.index_id = a.index_id AND e.key = a.key
),
upserted_keys AS (
    INSERT INTO index_entries(index_id, key, id)
    SELECT u.index_id, u.key, u.id
    FROM fence, unnest(%(key_indexes)s::integer[], %(keys)s::bytea[], %(key_ids)s::text[])
        AS u(index_id, key, id)
    ON CONFLICT (index_id, key) DO UPDATE SET id = excluded.id
),
commits AS (
    INSERT INTO commit_log(ts, writes)
    SELECT u.ts, u.writes
    FROM fence, unnest(%(commit_ts)s::bigint[], %(commit_keys)s::bytea[]) AS u(ts, writes)
),
requests AS (
    INSERT INTO idempotency(key, ts, result)
    SELECT u.key, u.ts, u.result
    FROM fence, unnest(%(request_keys)s::text[], %(request_ts)s::bigint[],
                       %(request_results)s::text[]) AS u(key, ts, result)
)
SELECT count(*) FROM fence
"""
_SET_META = """
WITH fence AS (
    SELECT epoch FROM leader_epoch
    WHERE %(epoch)s::bigint IS NULL OR epoch = %(epoch)s::bigint
    FOR SHARE
)
INSERT INTO meta(key, value) SELECT %(key)s, %(value)s FROM fence
ON CONFLICT (key) DO UPDATE SET value = excluded.value
RETURNING 1
"""
_INSERT_KEYS = """
    INSERT INTO index_entries(index_id, key, id)
    SELECT * FROM unnest(%s::integer[], %s::bytea[], %s::text[])
"""

_UNAVAILABLE_SQLSTATES = frozenset(
    {
        "57P01",  # admin_shutdown
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
    }
)

Connection = AsyncConnection[TupleRow]


# -- error translation -------------------------------------------------------------------


def translate_error(exc: Exception, what: str) -> SynclineError:
    """The Syncline error for a psycopg (or pool) error raised while doing ``what``.

    Classified by SQLSTATE: connection errors (class 08, or a client-side
    failure with no SQLSTATE), server shutdown, pool timeouts and serialization
    failures are retryable :class:`UnavailableError`; anything else is a
    generic error, logged here.
    """
    if isinstance(exc, PoolTimeout | PoolClosed):
        return UnavailableError(f"PostgreSQL is unavailable ({what}): no connection")
    sqlstate = exc.sqlstate if isinstance(exc, psycopg.Error) else None
    if sqlstate is not None and (sqlstate.startswith("08") or sqlstate in _UNAVAILABLE_SQLSTATES):
        return UnavailableError(f"PostgreSQL is unavailable ({what}): SQLSTATE {sqlstate}")
    if sqlstate is None and isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        # Raised by the client, not the server: the connection is gone or unusable.
        return UnavailableError(f"PostgreSQL is unavailable ({what}): {type(exc).__name__}")
    log.error("PostgreSQL storage error during %s (SQLSTATE %s)", what, sqlstate, exc_info=exc)
    return SynclineError(f"storage error during {what}")


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    try:
        yield
    except (psycopg.Error, PoolTimeout, PoolClosed) as exc:
        raise translate_error(exc, what) from exc


async def _check_idle_connection(conn: Connection) -> None:
    """Pool check: ping only a connection whose socket has something to say.

    An idle connection receives nothing unless the server closed it (or sent a
    notice), so an unreadable socket means a live connection and costs no round
    trip; a readable one gets the pool's full check, which fails if it is dead.
    """
    try:
        fd = conn.pgconn.socket
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        quiet = not poller.poll(0)
    except (psycopg.OperationalError, OSError, AttributeError):
        quiet = False  # closed, or no poll() on this platform: check the slow way
    if not quiet:
        await AsyncConnectionPool.check_connection(conn)


async def _configure(conn: Connection) -> None:
    # A batch is durable when write_batch returns, whatever the server's default.
    await conn.execute("SET synchronous_commit TO on")


async def _rollback_quietly(conn: Connection) -> None:
    # The connection may be broken too; the pool discards it then.
    with contextlib.suppress(psycopg.Error):
        await conn.execute("ROLLBACK")


def _notified_ts(channel: str, payload: str) -> int | None:
    """The ts a commit notification carries; None for anything else on the channel."""
    if channel == COMMIT_CHANNEL and payload.isascii() and payload.isdigit():
        return int(payload)
    log.debug("ignoring notification %r on %s", payload[:40], channel)
    return None


# -- snapshots -----------------------------------------------------------------------------


class PostgresSnapshot:
    """A ``REPEATABLE READ READ ONLY`` transaction on one pooled connection."""

    def __init__(self, conn: Connection, ts: int) -> None:
        self._conn = conn
        self.ts = ts

    async def get(self, doc_id: str) -> Document | None:
        with _translated("get"):
            cur = await self._conn.execute(
                "SELECT value::text FROM documents WHERE id = %s", (doc_id,)
            )
            row = await cur.fetchone()
        return decode_jsonb_document(row[0]) if row else None

    async def scan(
        self, index_id: int, start: bytes, end: bytes | None, *, descending: bool, limit: int
    ) -> list[tuple[bytes, Document]]:
        params = {"index_id": index_id, "start": start, "end": end, "limit": limit}
        with _translated("scan"):
            cur = await self._conn.execute(_SCAN_SQL[(descending, end is not None)], params)
            rows = await cur.fetchall()
        return [(bytes(key), decode_jsonb_document(value)) for key, value in rows]

    async def commits_after(self, ts: int, *, limit: int) -> list[CommitLogEntry]:
        with _translated("commits_after"):
            cur = await self._conn.execute(
                "SELECT ts, writes FROM commit_log WHERE ts > %s AND ts <= %s ORDER BY ts LIMIT %s",
                (ts, self.ts, limit),
            )
            rows = await cur.fetchall()
        return [CommitLogEntry(t, *decode_commit_keys(bytes(w))) for t, w in rows]

    async def table_documents(self, table_number: int) -> list[Document]:
        with _translated("table_documents"):
            cur = await self._conn.execute(
                "SELECT value::text FROM documents WHERE table_number = %s", (table_number,)
            )
            rows = await cur.fetchall()
        return [decode_jsonb_document(value) for (value,) in rows]


class _SnapshotContext:
    def __init__(self, storage: PostgresStorage) -> None:
        self._storage = storage
        self._conn: Connection | None = None
        self._pool: AsyncConnectionPool[Connection] | None = None

    async def __aenter__(self) -> PostgresSnapshot:
        pool = self._pool = self._storage._require_pool()
        with _translated("snapshot"):
            conn = await pool.getconn()
        try:
            with _translated("snapshot"):
                # One round trip; the first statement in the transaction fixes its snapshot.
                cur = await conn.execute(_BEGIN_SNAPSHOT)
                cur.nextset()
                row = await cur.fetchone()
        except Exception:
            await _rollback_quietly(conn)
            await pool.putconn(conn)
            raise
        except BaseException:
            await pool.putconn(conn)  # the pool discards a connection left mid-query
            raise
        assert row is not None
        self._conn = conn
        return PostgresSnapshot(conn, int(row[0]))

    async def __aexit__(self, *exc: object) -> None:
        conn, self._conn = self._conn, None
        assert conn is not None and self._pool is not None
        try:
            # Ending a read-only transaction cannot lose anything: if the
            # connection broke, the reads that returned were still consistent,
            # and the pool discards the connection.
            with contextlib.suppress(psycopg.Error):
                await conn.execute("COMMIT")
        finally:
            await self._pool.putconn(conn)


# -- storage ---------------------------------------------------------------------------------


class PostgresStorage:
    """Storage in one PostgreSQL database, reached through a connection pool."""

    def __init__(
        self,
        dsn: str,
        *,
        pool_min: int = 2,
        pool_max: int = 16,
        acquire_timeout_seconds: float = 10.0,
        open_timeout_seconds: float = 30.0,
    ) -> None:
        """``dsn``: a libpq connection string or URL. ``pool_min``/``pool_max``:
        connections kept open / opened at most (1 <= min <= max). A snapshot holds
        one connection for its lifetime. ``acquire_timeout_seconds``: how long an
        operation waits for a connection (while PostgreSQL restarts, say) before
        raising UnavailableError. ``open_timeout_seconds``: how long ``open`` waits
        for the first ``pool_min`` connections."""
        if not 1 <= pool_min <= pool_max:
            raise ConfigError(f"need 1 <= pool_min <= pool_max, got {pool_min} and {pool_max}")
        self._dsn = dsn
        self._pool_min = pool_min
        self._pool_max = pool_max
        self._acquire_timeout_seconds = acquire_timeout_seconds
        self._open_timeout_seconds = open_timeout_seconds
        self._pool: AsyncConnectionPool[Connection] | None = None

    async def __aenter__(self) -> PostgresStorage:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Open the pool and apply pending migrations. Idempotent."""
        if self._pool is not None:
            return
        pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            self._dsn,
            min_size=self._pool_min,
            max_size=self._pool_max,
            kwargs={"autocommit": True},
            configure=_configure,
            check=_check_idle_connection,
            timeout=self._acquire_timeout_seconds,
            name="syncline-storage",
            open=False,
        )
        try:
            with _translated("open"):
                await pool.open(wait=True, timeout=self._open_timeout_seconds)
            self._pool = pool
            await self._migrate()
        except BaseException:
            self._pool = None
            await pool.close()
            raise

    async def close(self) -> None:
        """Close every connection (waiting for those in use to come back). Idempotent."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def _require_pool(self) -> AsyncConnectionPool[Connection]:
        if self._pool is None:
            raise SynclineError("PostgreSQL storage is not open")
        return self._pool

    @contextlib.asynccontextmanager
    async def _connection(self, what: str) -> AsyncIterator[Connection]:
        pool = self._require_pool()
        with _translated(what):
            async with pool.connection() as conn:
                yield conn

    async def _migrate(self) -> None:
        async with self._connection("migrate") as conn, conn.transaction():
            # Before anything else, so concurrent starters queue here and the
            # second finds every migration applied.
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_KEY,))
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS syncline_migrations("
                "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur = await conn.execute("SELECT version FROM syncline_migrations")
            applied = {version for (version,) in await cur.fetchall()}
            for version, script in _MIGRATIONS:
                if version in applied:
                    continue
                log.info("applying storage migration %d", version)
                await conn.execute(script)
                await conn.execute(
                    "INSERT INTO syncline_migrations(version) VALUES (%s)", (version,)
                )

    # -- reads -----------------------------------------------------------------------

    def snapshot(self) -> _SnapshotContext:
        return _SnapshotContext(self)

    async def _fetch(
        self, what: str, sql: LiteralString, params: Sequence[Any] | dict[str, Any] = ()
    ) -> list[Any]:
        async with self._connection(what) as conn:
            cur = await conn.execute(sql, params)
            return await cur.fetchall()

    async def max_ts(self) -> int:
        rows = await self._fetch("max_ts", "SELECT COALESCE(MAX(ts), 0) FROM commit_log")
        return int(rows[0][0])

    async def commits_after(self, ts: int, *, limit: int) -> list[CommitLogEntry]:
        rows = await self._fetch(
            "commits_after",
            "SELECT ts, writes FROM commit_log WHERE ts > %s ORDER BY ts LIMIT %s",
            (ts, limit),
        )
        return [CommitLogEntry(t, *decode_commit_keys(bytes(w))) for t, w in rows]

    async def load_catalog(self) -> Catalog:
        async with self._connection("load_catalog") as conn:
            tables = await conn.execute("SELECT table_number, name FROM tables")
            table_rows = await tables.fetchall()
            indexes = await conn.execute(
                "SELECT index_id, table_number, name, fields FROM indexes ORDER BY index_id"
            )
            index_rows = await indexes.fetchall()
        catalog = Catalog()
        for number, name in sorted(table_rows):
            catalog.tables[name] = TableMeta(number, name)
        for index_id, number, name, fields in index_rows:
            catalog.indexes.setdefault(number, []).append(
                IndexMeta(index_id, number, name, tuple(fields))
            )
        return catalog

    async def find_idempotent_many(self, keys: Sequence[str]) -> dict[str, tuple[int, str]]:
        if not keys:
            return {}
        rows = await self._fetch(
            "find_idempotent_many",
            "SELECT key, ts, result FROM idempotency WHERE key = ANY(%s)",
            (list(keys),),
        )
        return {str(key): (int(ts), str(result)) for key, ts, result in rows}

    async def find_idempotent(self, key: str) -> tuple[int, str] | None:
        rows = await self._fetch(
            "find_idempotent", "SELECT ts, result FROM idempotency WHERE key = %s", (key,)
        )
        return (int(rows[0][0]), str(rows[0][1])) if rows else None

    async def get_meta(self, key: str) -> str | None:
        rows = await self._fetch("get_meta", "SELECT value FROM meta WHERE key = %s", (key,))
        return str(rows[0][0]) if rows else None

    # -- commit notifications -----------------------------------------------------------

    async def commit_notifications(
        self, *, check_interval_seconds: float = 10.0, max_retry_seconds: float = 2.0
    ) -> AsyncGenerator[int, None]:
        """Yield commit ts as commits land, reconnecting for as long as the caller iterates.

        A dedicated autocommit connection (not a pooled one) LISTENs on
        ``syncline_commits``, which the commit-log trigger notifies with each
        commit's ts. A notification is only a wake-up; the commit log stays the
        truth. Notifications sent while the connection is down are lost, so after
        every (re)connect the current max ts is yielded first: a reader behind it
        catches up. Close the generator (``aclose``) to stop listening.

        ``check_interval_seconds`` (> 0): a connection is checked with a round trip
        at least this often, so one that died silently (no FIN) is replaced.
        ``max_retry_seconds`` (>= 0.05): the longest wait between reconnect
        attempts; the wait starts at 0.05 s and doubles.
        """
        if check_interval_seconds <= 0 or max_retry_seconds < _LISTEN_RETRY_START_SECONDS:
            raise ConfigError(
                "need check_interval_seconds > 0 and max_retry_seconds >= "
                f"{_LISTEN_RETRY_START_SECONDS}, got {check_interval_seconds} and "
                f"{max_retry_seconds}"
            )
        backoff = _LISTEN_RETRY_START_SECONDS
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._dsn,
                    autocommit=True,
                    connect_timeout=max(2, round(self._acquire_timeout_seconds)),
                )
                async with conn:
                    await conn.execute("LISTEN syncline_commits")
                    # Read after LISTEN took effect: any later commit is notified.
                    cur = await conn.execute("SELECT COALESCE(MAX(ts), 0) FROM commit_log")
                    row = await cur.fetchone()
                    assert row is not None
                    backoff = _LISTEN_RETRY_START_SECONDS
                    yield int(row[0])
                    while True:
                        notifies = conn.notifies(timeout=check_interval_seconds)
                        async with contextlib.aclosing(notifies):
                            async for notify in notifies:
                                ts = _notified_ts(notify.channel, notify.payload)
                                if ts is not None:
                                    yield ts
                        await conn.execute("SELECT 1")
            except psycopg.Error as exc:
                error = translate_error(exc, "listening for commits")
                log.warning("%s; listening again in %.2f s", error.message, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_retry_seconds)

    # -- writes ----------------------------------------------------------------------

    async def set_meta(self, key: str, value: str, *, epoch: int | None = None) -> None:
        # Fenced as _WRITE_BATCH is: no row of leader_epoch with this epoch, no write.
        rows = await self._fetch(
            "set_meta", _SET_META, {"key": key, "value": value, "epoch": epoch}
        )
        if not rows:
            raise FencedError(f"leader epoch {epoch} is no longer current")

    async def acquire_epoch(self) -> int:
        # Waits for a batch in flight (it holds the row FOR SHARE): the new
        # leader then reads a max ts that includes that batch.
        rows = await self._fetch(
            "acquire_epoch", "UPDATE leader_epoch SET epoch = epoch + 1 RETURNING epoch"
        )
        return int(rows[0][0])

    async def write_batch(self, batch: Sequence[CommitEntry], *, epoch: int | None = None) -> None:
        """Persist commits atomically and durably, in order, in one statement.

        The batch is collapsed to the final state of each document and index key,
        then sent as one statement (``_WRITE_BATCH``) with one array per column:
        one round trip, one implicit transaction, whatever the batch's size.
        """
        if not batch:
            return
        collapsed = collapse_batch(batch)
        documents = list(collapsed.documents.items())
        keys = list(collapsed.index_entries.items())
        requests = [(e.ts, e.idempotency) for e in batch if e.idempotency is not None]
        params: dict[str, Any] = {
            "epoch": epoch,
            "deleted": [doc_id for doc_id, doc in documents if doc.value is None],
            "doc_ids": [doc_id for doc_id, doc in documents if doc.value is not None],
            "doc_tables": [doc.table_number for _, doc in documents if doc.value is not None],
            "doc_ts": [doc.ts for _, doc in documents if doc.value is not None],
            "doc_values": [
                encode_jsonb_document(doc.value) for _, doc in documents if doc.value is not None
            ],
            "absent_indexes": [index_id for (index_id, _), doc_id in keys if doc_id is None],
            "absent_keys": [key for (_, key), doc_id in keys if doc_id is None],
            "key_indexes": [index_id for (index_id, _), doc_id in keys if doc_id is not None],
            "keys": [key for (_, key), doc_id in keys if doc_id is not None],
            "key_ids": [doc_id for _, doc_id in keys if doc_id is not None],
            "commit_ts": [e.ts for e in batch],
            "commit_keys": [
                encode_commit_keys((k for w in e.writes for k in w.written_keys()), e.traceparent)
                for e in batch
            ],
            "request_keys": [record.key for _, record in requests],
            "request_ts": [ts for ts, _ in requests],
            "request_results": [record.result_json for _, record in requests],
        }
        rows = await self._fetch("write_batch", _WRITE_BATCH, params)
        if rows[0][0] == 0:
            raise FencedError(f"leader epoch {epoch} is no longer current")

    async def prune(self, *, commit_log_before_ts: int, idempotency_before_ts: int) -> int:
        async with self._connection("prune") as conn, conn.transaction():
            logs = await conn.execute(
                "DELETE FROM commit_log WHERE ts < %s AND ts < (SELECT MAX(ts) FROM commit_log)",
                (commit_log_before_ts,),
            )
            keys = await conn.execute(
                "DELETE FROM idempotency WHERE ts < %s", (idempotency_before_ts,)
            )
            return max(logs.rowcount, 0) + max(keys.rowcount, 0)

    async def create_table(self, name: str) -> TableMeta:
        async with self._connection("create_table") as conn, conn.transaction():
            # Serialises table creation, so two callers cannot pick the same number.
            await conn.execute("LOCK TABLE tables IN SHARE ROW EXCLUSIVE MODE")
            cur = await conn.execute("SELECT table_number FROM tables WHERE name = %s", (name,))
            row = await cur.fetchone()
            if row is not None:
                return TableMeta(int(row[0]), name)
            cur = await conn.execute(
                "INSERT INTO tables(table_number, name) "
                "SELECT COALESCE(MAX(table_number), 0) + 1, %s FROM tables "
                "RETURNING table_number",
                (name,),
            )
            row = await cur.fetchone()
            assert row is not None
            return TableMeta(int(row[0]), name)

    async def create_index(
        self,
        table_number: int,
        name: str,
        fields: tuple[str, ...],
        entries: Sequence[tuple[bytes, str]],
    ) -> IndexMeta:
        async with self._connection("create_index") as conn, conn.transaction():
            cur = await conn.execute(
                "INSERT INTO indexes(table_number, name, fields) VALUES (%s, %s, %s::jsonb) "
                "RETURNING index_id",
                (table_number, name, json.dumps(list(fields))),
            )
            row = await cur.fetchone()
            assert row is not None
            index_id = int(row[0])
            for start in range(0, len(entries), _BACKFILL_CHUNK):
                chunk = entries[start : start + _BACKFILL_CHUNK]
                await conn.execute(
                    _INSERT_KEYS,
                    (
                        [index_id] * len(chunk),
                        [key for key, _ in chunk],
                        [doc_id for _, doc_id in chunk],
                    ),
                )
            return IndexMeta(index_id, table_number, name, fields)

    async def drop_index(self, index_id: int) -> None:
        async with self._connection("drop_index") as conn, conn.transaction():
            await conn.execute("DELETE FROM index_entries WHERE index_id = %s", (index_id,))
            await conn.execute("DELETE FROM indexes WHERE index_id = %s", (index_id,))
