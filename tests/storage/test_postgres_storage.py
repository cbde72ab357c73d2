"""PostgresStorage against a real PostgreSQL: each test gets a fresh database."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import random
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import psycopg.errors
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg_pool import PoolTimeout

from syncline._errors import FencedError, SynclineError, UnavailableError
from syncline.devservers import LocalPostgres
from syncline.storage import (
    CommitEntry,
    Document,
    DocumentWrite,
    IdempotencyRecord,
    IndexKeyChange,
    PostgresStorage,
    SqliteStorage,
    Storage,
    _postgres,
)
from syncline.storage._postgres import translate_error
from syncline.values import (
    INT64_MAX,
    INT64_MIN,
    compare_values,
    encode_index_key,
    encode_key,
    json_dumps_canonical,
    to_json,
)
from tests.fixtures.infra import assert_eventually

T = TypeVar("T")

TABLE = 1
INDEX = 10
BY_ID = 11


def insert(doc_id: str, key: bytes, **fields: Any) -> DocumentWrite:
    return DocumentWrite(
        doc_id, TABLE, {"_id": doc_id, **fields}, (IndexKeyChange(INDEX, None, key),)
    )


def update(doc_id: str, old: bytes, new: bytes, **fields: Any) -> DocumentWrite:
    return DocumentWrite(
        doc_id, TABLE, {"_id": doc_id, **fields}, (IndexKeyChange(INDEX, old, new),)
    )


def delete(doc_id: str, key: bytes) -> DocumentWrite:
    return DocumentWrite(doc_id, TABLE, None, (IndexKeyChange(INDEX, key, None),))


def commit(ts: int, *writes: DocumentWrite, key: str | None = None) -> CommitEntry:
    record = IdempotencyRecord(key, f'"{key}"') if key is not None else None
    return CommitEntry(ts, writes, record)


async def entries(storage: Storage, index_id: int = INDEX) -> list[tuple[bytes, str]]:
    async with storage.snapshot() as snapshot:
        rows = await snapshot.scan(index_id, b"", None, descending=False, limit=10_000)
    return [(key, str(doc["_id"])) for key, doc in rows]


async def get(storage: Storage, doc_id: str) -> Document | None:
    async with storage.snapshot() as snapshot:
        return await snapshot.get(doc_id)


async def sql(dsn: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(query.encode(), params)
        return await cur.fetchall() if cur.description else []


def exact(value: object) -> str:
    """A text that differs whenever two values differ (bits of floats, int vs float)."""
    return json_dumps_canonical(to_json(value))


@pytest.fixture
async def storage(pg_dsn: str) -> AsyncIterator[PostgresStorage]:
    async with PostgresStorage(pg_dsn, pool_min=1, pool_max=4) as opened:
        yield opened


# -- migrations ---------------------------------------------------------------------------


async def test_migrations_apply_once_when_opened_again_and_concurrently(pg_dsn: str) -> None:
    starters = [PostgresStorage(pg_dsn, pool_min=1) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in starters))
    try:
        await starters[0].close()
        await starters[0].open()  # reopening finds everything applied
        versions = await sql(pg_dsn, "SELECT version FROM syncline_migrations ORDER BY version")
        assert versions == [(v,) for v, _ in _postgres._MIGRATIONS]
        assert await sql(pg_dsn, "SELECT singleton, epoch FROM leader_epoch") == [(True, 0)]
        assert await starters[1].acquire_epoch() == 1
    finally:
        for started in starters:
            await started.close()


async def test_an_older_database_gets_the_new_migrations(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with PostgresStorage(pg_dsn, pool_min=1) as storage:
        await storage.set_meta("kept", "yes")
    next_version = len(_postgres._MIGRATIONS) + 1
    upgraded = [*_postgres._MIGRATIONS, (next_version, "CREATE TABLE probe(x integer)")]
    monkeypatch.setattr(_postgres, "_MIGRATIONS", upgraded)
    async with PostgresStorage(pg_dsn, pool_min=1) as storage:
        assert await storage.get_meta("kept") == "yes"
    versions = await sql(pg_dsn, "SELECT version FROM syncline_migrations ORDER BY version")
    assert versions == [(v,) for v in range(1, next_version + 1)]
    assert await sql(pg_dsn, "SELECT count(*) FROM probe") == [(0,)]


# -- write_batch ----------------------------------------------------------------------------


async def test_batch_writing_the_same_document_twice_keeps_the_last(
    storage: PostgresStorage, pg_dsn: str
) -> None:
    await storage.write_batch(
        [commit(1, insert("a", b"k1", v=1.0)), commit(2, update("a", b"k1", b"k2", v=2.0))]
    )
    assert await get(storage, "a") == {"_id": "a", "v": 2.0}
    assert await entries(storage) == [(b"k2", "a")]
    assert await sql(pg_dsn, "SELECT id, ts FROM documents") == [("a", 2)]


async def test_batch_moving_a_key_away_and_back(storage: PostgresStorage) -> None:
    await storage.write_batch([commit(1, insert("a", b"k", v=0.0))])
    await storage.write_batch(
        [commit(2, update("a", b"k", b"m", v=1.0)), commit(3, update("a", b"m", b"k", v=2.0))]
    )
    assert await entries(storage) == [(b"k", "a")]
    assert await get(storage, "a") == {"_id": "a", "v": 2.0}


async def test_batch_inserting_then_deleting_leaves_nothing(
    storage: PostgresStorage, pg_dsn: str
) -> None:
    await storage.write_batch(
        [
            commit(1, insert("keep", b"a")),
            commit(2, insert("gone", b"b")),
            commit(3, delete("gone", b"b")),
        ]
    )
    assert await get(storage, "gone") is None
    assert await entries(storage) == [(b"a", "keep")]
    assert await sql(pg_dsn, "SELECT id FROM documents") == [("keep",)]


async def test_batch_handing_a_key_to_another_document(storage: PostgresStorage) -> None:
    await storage.write_batch([commit(1, insert("a", b"k"), insert("b", b"x"))])
    await storage.write_batch(
        [commit(2, update("a", b"k", b"y"), update("b", b"x", b"k"))],
    )
    assert await entries(storage) == [(b"k", "b"), (b"y", "a")]


async def test_batch_records_commit_log_and_request_keys(storage: PostgresStorage) -> None:
    first = commit(5, insert("a", b"ka"), key="r1")
    second = commit(7, update("a", b"ka", b"kb"), delete("a", b"kb"))
    await storage.write_batch([first, second])
    async with storage.snapshot() as snapshot:
        assert snapshot.ts == 7
        log = await snapshot.commits_after(0, limit=10)
        assert [c.ts for c in log] == [5, 7]
        assert log[0].keys == ((INDEX, b"ka"),)
        assert log[1].keys == ((INDEX, b"ka"), (INDEX, b"kb"), (INDEX, b"kb"))
        assert [c.ts for c in await snapshot.commits_after(5, limit=10)] == [7]
        assert [c.ts for c in await snapshot.commits_after(0, limit=1)] == [5]
    assert await storage.find_idempotent("r1") == (5, '"r1"')
    assert await storage.find_idempotent("r2") is None
    assert await storage.max_ts() == 7


async def test_a_failed_batch_writes_nothing(storage: PostgresStorage) -> None:
    await storage.write_batch([commit(1, insert("a", b"a"), key="dup")])
    with pytest.raises(SynclineError) as failure:
        # The request key is already recorded: the last statement fails.
        await storage.write_batch([commit(2, insert("b", b"b")), commit(3, key="dup")])
    assert not failure.value.retryable
    assert isinstance(failure.value.__cause__, psycopg.errors.UniqueViolation)
    assert await get(storage, "b") is None
    assert await entries(storage) == [(b"a", "a")]
    assert await storage.max_ts() == 1
    # The connection went back to the pool in a usable state.
    await storage.write_batch([commit(2, insert("b", b"b"))])
    assert await storage.max_ts() == 2


async def test_an_empty_batch_is_a_no_op(storage: PostgresStorage) -> None:
    await storage.write_batch([])
    assert await storage.max_ts() == 0


def _random_batches(rng: random.Random) -> list[list[CommitEntry]]:
    """Consistent batches over a few documents and keys: inserts, moves, deletes.

    Each write's old key is the document's current key, and a new key is one no
    other document holds at that point, so SQLite accepts them applied in order.
    """
    holder: dict[bytes, str] = {}
    current: dict[str, bytes] = {}
    keys = [bytes([k]) for k in range(6)]
    ts = 0
    batches: list[list[CommitEntry]] = []
    for _ in range(rng.randint(1, 6)):
        batch: list[CommitEntry] = []
        for _ in range(rng.randint(1, 4)):
            ts += 1
            writes: list[DocumentWrite] = []
            for _ in range(rng.randint(1, 3)):
                doc_id = rng.choice("abcd")
                old = current.get(doc_id)
                free = [k for k in keys if k not in holder or k == old]
                by_id = IndexKeyChange(BY_ID, doc_id.encode(), doc_id.encode())
                if old is not None and rng.random() < 0.3:
                    del holder[old], current[doc_id]
                    change = IndexKeyChange(INDEX, old, None)
                    gone = IndexKeyChange(BY_ID, doc_id.encode(), None)
                    writes.append(DocumentWrite(doc_id, TABLE, None, (change, gone)))
                    continue
                new = rng.choice(free)
                if old is not None:
                    del holder[old]
                else:
                    by_id = IndexKeyChange(BY_ID, None, doc_id.encode())
                holder[new], current[doc_id] = doc_id, new
                value = {"_id": doc_id, "ts": ts, "r": rng.random()}
                changes = (IndexKeyChange(INDEX, old, new), by_id)
                writes.append(DocumentWrite(doc_id, TABLE, value, changes))
            batch.append(CommitEntry(ts, tuple(writes)))
        batches.append(batch)
    return batches


async def _state(storage: Storage) -> tuple[Any, ...]:
    async with storage.snapshot() as snapshot:
        docs = sorted(
            (exact(d) for d in await snapshot.table_documents(TABLE)),
        )
        scans = [
            [(k, exact(d)) for k, d in await snapshot.scan(i, b"", None, descending=o, limit=99)]
            for i in (INDEX, BY_ID)
            for o in (False, True)
        ]
        log = await snapshot.commits_after(0, limit=999)
        return snapshot.ts, docs, scans, log


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(rng=st.randoms(use_true_random=False))
async def test_batches_leave_the_same_state_as_sqlite(
    rng: random.Random, storage: PostgresStorage, pg_dsn: str
) -> None:
    await sql(pg_dsn, "TRUNCATE documents, index_entries, commit_log, idempotency")
    with tempfile.TemporaryDirectory() as directory:
        reference = SqliteStorage(Path(directory) / "reference.sqlite3")
        await reference.open()
        try:
            for batch in _random_batches(rng):
                await reference.write_batch(batch)
                await storage.write_batch(batch)
                assert await _state(storage) == await _state(reference)
        finally:
            await reference.close()


# -- snapshots ------------------------------------------------------------------------------


async def test_a_snapshot_does_not_see_later_batches(storage: PostgresStorage) -> None:
    await storage.write_batch([commit(10, insert("a", b"a"))])
    async with storage.snapshot() as before:
        await storage.write_batch([commit(20, insert("b", b"b"), update("a", b"a", b"z", v=1.0))])
        assert before.ts == 10
        assert await before.get("b") is None
        assert await before.get("a") == {"_id": "a"}
        rows = await before.scan(INDEX, b"", None, descending=False, limit=10)
        assert [(k, d["_id"]) for k, d in rows] == [(b"a", "a")]
        assert [c.ts for c in await before.commits_after(0, limit=10)] == [10]
        assert len(await before.table_documents(TABLE)) == 1
        async with storage.snapshot() as after:
            assert after.ts == 20
            assert await after.get("a") == {"_id": "a", "v": 1.0}
            assert [c.ts for c in await after.commits_after(before.ts, limit=10)] == [20]


async def test_scan_bounds_order_and_limit(storage: PostgresStorage) -> None:
    await storage.write_batch([commit(1, *(insert(f"d{i}", bytes([i])) for i in range(6)))])
    async with storage.snapshot() as snapshot:

        async def keys(start: bytes, end: bytes | None, descending: bool, limit: int) -> list[int]:
            rows = await snapshot.scan(INDEX, start, end, descending=descending, limit=limit)
            return [key[0] for key, _ in rows]

        assert await keys(b"\x01", b"\x04", False, 10) == [1, 2, 3]
        assert await keys(b"\x01", b"\x04", True, 10) == [3, 2, 1]
        assert await keys(b"\x02", None, True, 2) == [5, 4]
        assert await keys(b"", None, False, 2) == [0, 1]
        assert await keys(b"\x06", None, False, 5) == []


async def test_a_failing_snapshot_body_returns_its_connection(pg_dsn: str) -> None:
    async with PostgresStorage(pg_dsn, pool_min=1, pool_max=1) as storage:
        with pytest.raises(RuntimeError):
            async with storage.snapshot():
                raise RuntimeError("body failed")
        with pytest.raises(SynclineError, match="storage error during scan"):
            async with storage.snapshot() as snapshot:
                # Aborts the transaction.
                await snapshot.scan(INDEX, b"", None, descending=False, limit=-1)
        async with storage.snapshot() as snapshot:  # would time out if either leaked
            assert snapshot.ts == 0


# -- values and keys ------------------------------------------------------------------------

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(INT64_MIN, INT64_MAX)
    | st.floats()
    | st.sampled_from([0.0, -0.0, math.inf, -math.inf, math.nan, 5e-324, 1e300, 1e22])
    | st.text(alphabet=st.sampled_from("\x00\x01a~\x7f\xff\u0100\U0001f600$"), max_size=5)
    | st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=5)
    | st.binary(max_size=5)
)
_VALUES = st.recursive(
    _SCALARS,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "nul", "_x", "A b"]), children, max_size=3)
    ),
    max_leaves=10,
)

EVERY_TYPE: Document = {
    "_id": "all",
    "null": None,
    "floats": [0.0, -0.0, 0.1, 1e22, 1e300, 5e-324, 1.7976931348623157e308, math.inf, -math.inf],
    "nan": math.nan,
    "ints": [0, -1, INT64_MIN, INT64_MAX, 2**53 + 1],
    "bools": [True, False],
    "strings": ["", "plain", "a\x00b", "\x00", "é€😀", "$nul", '{"$nul": []}', "\\u0000"],
    "bytes": [b"", b"\x00\xff", bytes(range(256))],
    "nested": {"a": [{"b": {"c": []}}, {}], "nul": {"x": "\x00"}},
}


async def test_every_value_type_round_trips_exactly(storage: PostgresStorage) -> None:
    await storage.write_batch([commit(1, insert("all", b"k", **EVERY_TYPE))])
    async with storage.snapshot() as snapshot:
        read = [
            await snapshot.get("all"),
            (await snapshot.scan(INDEX, b"", None, descending=False, limit=1))[0][1],
            (await snapshot.table_documents(TABLE))[0],
        ]
    for doc in read:
        assert doc is not None and exact(doc) == exact(EVERY_TYPE)
        assert isinstance(doc["ints"][0], int) and isinstance(doc["floats"][0], float)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(values=st.lists(_VALUES, min_size=1, max_size=12))
async def test_values_round_trip_and_keys_sort_as_values(
    values: list[Any], storage: PostgresStorage
) -> None:
    ts = await storage.max_ts() + 1
    index = ts  # a fresh index per example
    writes = []
    for i, value in enumerate(values):
        doc_id = f"{ts}-{i}"
        key = encode_index_key([value, doc_id])
        writes.append(
            DocumentWrite(
                doc_id, TABLE, {"_id": doc_id, "v": value}, (IndexKeyChange(index, None, key),)
            )
        )
    await storage.write_batch([CommitEntry(ts, tuple(writes))])
    async with storage.snapshot() as snapshot:
        ascending = await snapshot.scan(index, b"", None, descending=False, limit=100)
        descending = await snapshot.scan(index, b"", None, descending=True, limit=100)
    keys = [key for key, _ in ascending]
    assert keys == sorted(keys) == [key for key, _ in reversed(descending)]
    assert len(keys) == len(values)
    by_id = {f"{ts}-{i}": value for i, value in enumerate(values)}
    for _, doc in ascending:
        assert exact(doc["v"]) == exact(by_id[doc["_id"]])
    stored = [doc["v"] for _, doc in ascending]
    for smaller, larger in itertools.pairwise(stored):
        assert compare_values(smaller, larger) <= 0


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=st.lists(_VALUES, min_size=2, max_size=20))
async def test_bytea_order_is_the_key_encoding_order(values: list[Any], pg_dsn: str) -> None:
    # PostgreSQL's own ORDER BY on bytea, with no help from the storage code.
    keys = [encode_key(value) for value in values]
    rows = await sql(pg_dsn, "SELECT k FROM unnest(%s::bytea[]) AS t(k) ORDER BY k", (keys,))
    ordered = [bytes(k) for (k,) in rows]
    assert ordered == sorted(keys)
    by_key = {key: value for key, value in zip(keys, values, strict=True)}
    for smaller, larger in itertools.pairwise(ordered):
        assert compare_values(by_key[smaller], by_key[larger]) <= 0


# -- epochs ---------------------------------------------------------------------------------


async def test_a_deposed_leader_writes_nothing(pg_dsn: str) -> None:
    async with (
        PostgresStorage(pg_dsn, pool_min=1) as old,
        PostgresStorage(pg_dsn, pool_min=1) as new,
    ):
        mine = await old.acquire_epoch()
        await old.write_batch([commit(1, insert("a", b"a"))], epoch=mine)
        theirs = await new.acquire_epoch()
        assert theirs == mine + 1
        with pytest.raises(FencedError) as fenced:
            await old.write_batch([commit(2, insert("late", b"l"), key="r")], epoch=mine)
        assert fenced.value.retryable
        assert await old.max_ts() == 1
        assert await get(old, "late") is None
        assert await old.find_idempotent("r") is None
        assert await entries(old) == [(b"a", "a")]
        await new.write_batch([commit(2, insert("b", b"b"))], epoch=theirs)
        # Without an epoch (embedded mode) nothing is checked.
        await old.write_batch([commit(3, insert("c", b"c"))])
        assert await new.max_ts() == 3


async def test_a_deposed_leader_cannot_write_meta(pg_dsn: str) -> None:
    async with (
        PostgresStorage(pg_dsn, pool_min=1) as old,
        PostgresStorage(pg_dsn, pool_min=1) as new,
    ):
        mine = await old.acquire_epoch()
        await old.set_meta("app_version", "1", epoch=mine)
        theirs = await new.acquire_epoch()
        with pytest.raises(FencedError):
            await old.set_meta("app_version", "2", epoch=mine)
        with pytest.raises(FencedError):
            await old.set_meta("brand_new_key", "x", epoch=mine)
        assert await new.get_meta("app_version") == "1"
        assert await new.get_meta("brand_new_key") is None
        await new.set_meta("app_version", "2", epoch=theirs)
        assert await old.get_meta("app_version") == "2"


async def _waiting_for_locks(dsn: str) -> int:
    rows = await sql(
        dsn,
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    return int(rows[0][0])


async def test_acquire_epoch_waits_for_a_batch_in_flight(pg_dsn: str) -> None:
    async with (
        PostgresStorage(pg_dsn, pool_min=1) as leader,
        PostgresStorage(pg_dsn, pool_min=1) as successor,
    ):
        epoch = await leader.acquire_epoch()
        await leader.write_batch([commit(4, insert("a", b"a"))], epoch=epoch)
        async with await psycopg.AsyncConnection.connect(pg_dsn) as blocker:
            # Holds the batch at its write of "a", after it locked the epoch row.
            await blocker.execute("SELECT 1 FROM documents WHERE id = 'a' FOR UPDATE")
            batch = asyncio.create_task(
                leader.write_batch([commit(5, update("a", b"a", b"b"), key="r")], epoch=epoch)
            )
            await assert_eventually(
                lambda: _is(_waiting_for_locks(pg_dsn), 1), what="the batch to block"
            )
            acquiring = asyncio.create_task(successor.acquire_epoch())
            await assert_eventually(
                lambda: _is(_waiting_for_locks(pg_dsn), 2), what="acquire_epoch to block"
            )
            assert not batch.done() and not acquiring.done()
            await blocker.rollback()
        await batch  # checked before the epoch moved: it commits
        assert await acquiring == epoch + 1
        assert await successor.max_ts() == 5
        assert await entries(successor) == [(b"b", "a")]
        with pytest.raises(FencedError):
            await leader.write_batch([commit(6, insert("b", b"b"))], epoch=epoch)


async def _is(count: Awaitable[int], expected: int) -> bool:
    return await count == expected


# -- prune, catalog, meta -------------------------------------------------------------------


async def test_prune_keeps_the_newest_commit(storage: PostgresStorage) -> None:
    for ts in (1, 2, 3):
        await storage.write_batch([commit(ts, insert(f"d{ts}", bytes([ts])), key=f"r{ts}")])
    assert await storage.prune(commit_log_before_ts=2, idempotency_before_ts=2) == 2
    assert await storage.prune(commit_log_before_ts=100, idempotency_before_ts=3) == 2
    async with storage.snapshot() as snapshot:
        assert snapshot.ts == 3
        assert [c.ts for c in await snapshot.commits_after(0, limit=10)] == [3]
    assert await storage.find_idempotent("r2") is None
    assert await storage.find_idempotent("r3") == (3, '"r3"')
    assert await storage.prune(commit_log_before_ts=100, idempotency_before_ts=0) == 0
    assert await storage.max_ts() == 3


async def test_catalog_tables_indexes_and_meta(storage: PostgresStorage, pg_dsn: str) -> None:
    users = await storage.create_table("users")
    posts = await storage.create_table("posts")
    assert (users.table_number, posts.table_number) == (1, 2)
    assert await storage.create_table("users") == users
    by_id = await storage.create_index(users.table_number, "by_id", (), [])
    by_name = await storage.create_index(
        users.table_number, "by_name", ("name", "age"), [(b"k2", "u2"), (b"k1", "u1")]
    )
    catalog = await storage.load_catalog()
    assert catalog.tables == {"users": users, "posts": posts}
    assert catalog.indexes == {users.table_number: [by_id, by_name]}
    assert by_name.fields == ("name", "age")
    assert await sql(pg_dsn, "SELECT key, id FROM index_entries ORDER BY key") == [
        (b"k1", "u1"),
        (b"k2", "u2"),
    ]
    await storage.drop_index(by_name.index_id)
    assert (await storage.load_catalog()).indexes == {users.table_number: [by_id]}
    assert await sql(pg_dsn, "SELECT count(*) FROM index_entries") == [(0,)]
    # Index ids are never reused, so old commit-log keys cannot name a new index.
    again = await storage.create_index(users.table_number, "by_name", ("name",), [])
    assert again.index_id > by_name.index_id
    assert await storage.get_meta("m") is None
    await storage.set_meta("m", "1")
    await storage.set_meta("m", "2")
    assert await storage.get_meta("m") == "2"


async def test_index_backfill_in_chunks(
    storage: PostgresStorage, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_postgres, "_BACKFILL_CHUNK", 2)
    entries = [(bytes([i]), f"d{i}") for i in range(5)]
    index = await storage.create_index(1, "by_x", ("x",), entries)
    rows = await sql(pg_dsn, "SELECT index_id, key, id FROM index_entries ORDER BY key")
    assert rows == [(index.index_id, key, doc_id) for key, doc_id in entries]


async def test_concurrent_create_table_agrees_on_numbers(pg_dsn: str) -> None:
    async with PostgresStorage(pg_dsn, pool_min=1) as a, PostgresStorage(pg_dsn, pool_min=1) as b:
        made = await asyncio.gather(
            *(s.create_table(name) for s in (a, b) for name in ("x", "y", "z"))
        )
    assert {m.name: m.table_number for m in made[:3]} == {m.name: m.table_number for m in made[3:]}
    assert sorted(m.table_number for m in made[:3]) == [1, 2, 3]


# -- availability -----------------------------------------------------------------------------


async def _until_available(action: Callable[[], Awaitable[T]], errors: list[Exception]) -> T:
    """Retry ``action`` on UnavailableError (recorded in ``errors``) for up to 20 s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:
        try:
            return await action()
        except UnavailableError as exc:
            errors.append(exc)
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.05)


async def test_storage_works_again_after_an_immediate_restart(
    postgres_server: LocalPostgres, pg_dsn: str
) -> None:
    async with PostgresStorage(pg_dsn, pool_min=2, acquire_timeout_seconds=5) as storage:
        await storage.write_batch([commit(1, insert("a", b"a"), key="r")])
        async with storage.snapshot() as snapshot:
            await postgres_server.restart(mode="immediate")
            with pytest.raises(UnavailableError) as lost:
                await snapshot.get("a")
            assert lost.value.retryable
        errors: list[Exception] = []
        assert await _until_available(storage.max_ts, errors) == 1
        assert await _until_available(lambda: get(storage, "a"), errors) == {"_id": "a"}
        await _until_available(lambda: storage.write_batch([commit(2, insert("b", b"b"))]), errors)
        # Recovered: everything works now without a single error.
        assert await storage.find_idempotent("r") == (1, '"r"')
        assert await entries(storage) == [(b"a", "a"), (b"b", "b")]
        assert await storage.acquire_epoch() == 1
        assert len(errors) <= 4, errors


# -- commit notifications ----------------------------------------------------------------


async def _next(commits: AsyncGenerator[int, None], timeout: float = 10.0) -> int:
    return await asyncio.wait_for(anext(commits), timeout)


async def test_the_commit_trigger_fires_always_so_replicas_notify_too(pg_dsn: str) -> None:
    async with PostgresStorage(pg_dsn, pool_min=1):
        pass
    rows = await sql(
        pg_dsn,
        "SELECT t.tgenabled FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "WHERE c.relname = 'commit_log' AND NOT t.tgisinternal",
    )
    assert rows == [("A",)]


async def test_each_commit_is_notified_with_its_ts(storage: PostgresStorage, pg_dsn: str) -> None:
    await storage.write_batch([commit(7, insert("a", b"a"))])
    async with contextlib.aclosing(storage.commit_notifications()) as commits:
        assert await _next(commits) == 7  # the current max ts comes first
        await storage.write_batch([commit(8, insert("b", b"b")), commit(9, insert("c", b"c"))])
        assert [await _next(commits), await _next(commits)] == [8, 9]
        # Notifications from elsewhere on the channel are not commits.
        await sql(pg_dsn, "NOTIFY syncline_commits, 'not a ts'")
        await storage.write_batch([commit(10, insert("d", b"d"))])
        assert await _next(commits) == 10


async def test_notifications_catch_up_after_a_restart(
    postgres_server: LocalPostgres, pg_dsn: str
) -> None:
    async with (
        PostgresStorage(pg_dsn, pool_min=1, acquire_timeout_seconds=5) as storage,
        contextlib.aclosing(
            storage.commit_notifications(check_interval_seconds=0.2, max_retry_seconds=0.2)
        ) as commits,
    ):
        assert await _next(commits) == 0
        # The generator is suspended (nobody asks for the next ts): its connection
        # dies with the restart, and the commit below is never notified to it.
        await postgres_server.restart(mode="immediate")
        errors: list[Exception] = []
        await _until_available(lambda: storage.write_batch([commit(5, insert("a", b"a"))]), errors)
        # Listening again, it yields the max ts it missed, so a reader catches up.
        assert await _next(commits, timeout=30) == 5
        await storage.write_batch([commit(6, insert("b", b"b"))])
        assert await _next(commits) == 6


async def test_open_without_a_server_is_unavailable() -> None:
    storage = PostgresStorage(
        "host=127.0.0.1 port=1 user=postgres connect_timeout=1", open_timeout_seconds=0.5
    )
    with pytest.raises(UnavailableError):
        await storage.open()
    with pytest.raises(SynclineError, match="not open"):
        await storage.max_ts()


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (psycopg.errors.AdminShutdown("shutdown"), True),
        (psycopg.errors.CrashShutdown("crash"), True),
        (psycopg.errors.CannotConnectNow("starting"), True),
        (psycopg.errors.lookup("08006")("connection failure"), True),
        (psycopg.errors.SerializationFailure("serialize"), True),
        (psycopg.errors.DeadlockDetected("deadlock"), True),
        (psycopg.OperationalError("server closed the connection unexpectedly"), True),
        (PoolTimeout("no connection"), True),
        (psycopg.errors.UniqueViolation("duplicate"), False),
        (psycopg.errors.UndefinedTable("no table"), False),
    ],
)
def test_errors_are_classified_by_sqlstate(error: Exception, retryable: bool) -> None:
    translated = translate_error(error, "test")
    assert isinstance(translated, UnavailableError) is retryable
    assert translated.retryable is retryable
    assert "duplicate" not in translated.message and "no table" not in translated.message
