"""Transactions through the runner: own writes, read sets, OCC, writes, limits, pagination."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from syncline import (
    InvalidIdError,
    InvalidValueError,
    OccConflictError,
    ValidationError,
)
from syncline.database import DatabaseWriter, PaginationJournal, Transaction
from syncline.storage import Snapshot
from syncline.txn import CommitRequest, ReadSet, sorted_keys_by_index
from tests.engine.conftest import Engine, EngineFactory, module_globals, write_app

SCHEMA = """
from syncline import define_schema, define_table, v

schema = define_schema({
    "items": define_table({
        "name": v.string(),
        "rank": v.float64(),
        "note": v.optional(v.union(v.string(), v.null())),
        "tag": v.optional(v.string()),
    }).index("by_rank", ["rank"]),
    "counters": define_table({"name": v.string(), "value": v.float64()}).index(
        "by_name", ["name"]
    ),
    "accounts": define_table({"name": v.string(), "balance": v.float64()}),
    "refs": define_table({"item": v.id("items")}),
    "blobs": define_table({"data": v.any()}),
})
"""

ITEMS = """
from syncline import UNSET, mutation, query, v

GATE = []
ATTEMPTS = {"take_then_write": 0}


def names(docs):
    return [d["name"] for d in docs]


@mutation
async def seed(ctx, items):
    return [await ctx.db.insert("items", {"name": n, "rank": r}) for n, r in items]


@mutation
async def add(ctx, name, rank):
    return await ctx.db.insert("items", {"name": name, "rank": rank})


@query
async def by_rank(ctx, order="asc"):
    return names(await ctx.db.query("items").with_index("by_rank").order(order).collect())


@query
async def first_n(ctx, n):
    return names(await ctx.db.query("items").with_index("by_rank").take(n))


@query
async def get(ctx, id):
    return await ctx.db.get(id)


@mutation
async def own_writes(ctx, move_id, delete_id):
    seen = {}
    await ctx.db.insert("items", {"name": "b", "rank": 2.0})
    await ctx.db.insert("items", {"name": "d", "rank": 4.0})
    f = await ctx.db.insert("items", {"name": "f", "rank": 0.5})
    q = lambda: ctx.db.query("items").with_index("by_rank")  # noqa: E731
    in_range = lambda: ctx.db.query("items").with_index(  # noqa: E731
        "by_rank", lambda r: r.gte("rank", 2.0).lte("rank", 4.0)
    )
    seen["asc"] = names(await q().collect())
    seen["desc"] = names(await q().order("desc").collect())
    seen["range"] = names(await in_range().collect())
    seen["range_desc"] = names(await in_range().order("desc").collect())
    seen["first2"] = names(await q().take(2))
    seen["got_f"] = (await ctx.db.get(f))["name"]
    await ctx.db.patch(move_id, {"rank": 3.5})
    seen["range_after_patch"] = names(await in_range().collect())
    seen["desc_after_patch"] = names(await q().order("desc").collect())
    await ctx.db.delete(delete_id)
    seen["asc_after_delete"] = names(await q().collect())
    seen["range_after_delete"] = names(await in_range().collect())
    seen["get_deleted"] = await ctx.db.get(delete_id)
    seen["by_creation"] = names(await ctx.db.query("items").collect())
    await ctx.db.delete(f)
    seen["after_deleting_own_insert"] = names(await q().collect())
    return seen


@mutation
async def take_then_write(ctx, n):
    seen = names(await ctx.db.query("items").with_index("by_rank").take(n))
    # Counted once read: the test's concurrent write must come after the read (the
    # snapshot is opened at the first read, not when the function starts).
    ATTEMPTS["take_then_write"] += 1
    if GATE:
        await GATE[0].wait()
    await ctx.db.insert("counters", {"name": "log", "value": float(len(seen))})
    return seen


@mutation
async def set_note(ctx, id, mode):
    if mode == "unset":
        await ctx.db.patch(id, {"note": UNSET})
    elif mode == "null":
        await ctx.db.patch(id, {"note": None})
    else:
        await ctx.db.patch(id, {"note": mode})
    return await ctx.db.get(id)


@mutation
async def replace(ctx, id, value):
    await ctx.db.replace(id, value)
    return await ctx.db.get(id)


@mutation
async def insert_two(ctx, first, second):
    await ctx.db.insert("items", first)
    await ctx.db.insert("items", second)


@query
async def page(ctx, cursor, n, order="asc"):
    return await ctx.db.query("items").with_index("by_rank").order(order).paginate(
        {"numItems": n, "cursor": cursor}
    )
"""

COUNTERS = """
from syncline import mutation, query


@mutation
async def create(ctx, name):
    return await ctx.db.insert("counters", {"name": name, "value": 0.0})


@mutation
async def increment(ctx, name):
    counter = await ctx.db.query("counters").with_index(
        "by_name", lambda q: q.eq("name", name)
    ).unique()
    value = counter["value"] + 1
    await ctx.db.patch(counter["_id"], {"value": value})
    return value


@query
async def value(ctx, name):
    counter = await ctx.db.query("counters").with_index(
        "by_name", lambda q: q.eq("name", name)
    ).unique()
    return counter["value"]
"""

ACCOUNTS = """
from syncline import mutation, query


@mutation
async def open_pair(ctx, balance):
    a = await ctx.db.insert("accounts", {"name": "a", "balance": balance})
    b = await ctx.db.insert("accounts", {"name": "b", "balance": balance})
    return [a, b]


@mutation
async def withdraw(ctx, mine, other, amount):
    own = await ctx.db.get(mine)
    theirs = await ctx.db.get(other)
    # The invariant spans both documents: a + b >= 0.
    if own["balance"] + theirs["balance"] >= amount:
        await ctx.db.patch(mine, {"balance": own["balance"] - amount})
        return True
    return False


@query
async def balances(ctx, ids):
    return [(await ctx.db.get(i))["balance"] for i in ids]
"""

REFS = """
from syncline import mutation, v


@mutation(args={"item": v.id("items")})
async def link(ctx, item):
    return await ctx.db.insert("refs", {"item": item})


@mutation
async def link_unchecked(ctx, item):
    return await ctx.db.insert("refs", {"item": item})
"""

BLOBS = """
from syncline import mutation, query


def nested(levels):
    value = 0.0
    for _ in range(levels):
        value = {"x": value}
    return value


@mutation
async def store(ctx, kind, size):
    await ctx.db.insert("blobs", {"data": "fine"})
    if kind == "string":
        data = "x" * size
    elif kind == "nested":
        data = nested(size)
    else:
        data = [0.0] * size
    return await ctx.db.insert("blobs", {"data": data})


@query
async def count(ctx):
    return len(await ctx.db.query("blobs").collect())
"""


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    return write_app(
        tmp_path / "app",
        {
            "schema.py": SCHEMA,
            "items.py": ITEMS,
            "counters.py": COUNTERS,
            "accounts.py": ACCOUNTS,
            "refs.py": REFS,
            "blobs.py": BLOBS,
        },
    )


@pytest.fixture
async def engine(make_engine: EngineFactory, app_dir: Path) -> Engine:
    engine = await make_engine()
    await engine.deploy(app_dir)
    return engine


async def seed(engine: Engine, *items: tuple[str, float]) -> list[str]:
    result = await engine.mutation("items:seed", {"items": [list(i) for i in items]})
    ids: list[str] = result.value
    return ids


async def written_since(engine: Engine, ts: int) -> dict[int, list[bytes]]:
    """The (index id -> keys) written by every commit after ``ts``."""
    async with engine.storage.snapshot() as snapshot:
        commits = await snapshot.commits_after(ts, limit=1000)
    return sorted_keys_by_index(k for c in commits for k in c.keys)


# -- reading your own writes -------------------------------------------------------


async def test_mutation_reads_its_own_writes_in_index_order(engine: Engine) -> None:
    ids = await seed(engine, ("a", 1.0), ("c", 3.0), ("e", 5.0))
    result = await engine.mutation("items:own_writes", {"move_id": ids[0], "delete_id": ids[2]})
    seen = result.value
    assert seen["asc"] == ["f", "a", "b", "c", "d", "e"]
    assert seen["desc"] == ["e", "d", "c", "b", "a", "f"]
    assert seen["range"] == ["b", "c", "d"]
    assert seen["range_desc"] == ["d", "c", "b"]
    assert seen["first2"] == ["f", "a"]
    assert seen["got_f"] == "f"
    # "a" moved from rank 1 into the middle of the range (3.5).
    assert seen["range_after_patch"] == ["b", "c", "a", "d"]
    assert seen["desc_after_patch"] == ["e", "d", "a", "c", "b", "f"]
    assert seen["asc_after_delete"] == ["f", "b", "c", "a", "d"]
    assert seen["range_after_delete"] == ["b", "c", "a", "d"]
    assert seen["get_deleted"] is None
    assert seen["by_creation"] == ["a", "c", "b", "d", "f"]
    assert seen["after_deleting_own_insert"] == ["b", "c", "a", "d"]
    # What committed is what the mutation last saw.
    assert await engine.query("items:by_rank") == ["b", "c", "a", "d"]
    assert await engine.query("items:get", {"id": ids[2]}) is None


# -- read sets of take(n) -------------------------------------------------------------


async def test_take_records_only_what_it_read(engine: Engine) -> None:
    await seed(engine, *((f"i{r}", float(r)) for r in range(1, 11)))
    result = await engine.run_query("items:first_n", {"n": 3})
    assert result.value == ["i1", "i2", "i3"]
    reads: ReadSet = result.read_set

    await engine.mutation("items:add", {"name": "far", "rank": 20.0})
    await engine.mutation("items:add", {"name": "after-third", "rank": 3.5})
    assert not reads.overlaps(await written_since(engine, result.ts))

    before = engine.committer.last_ts
    await engine.mutation("items:add", {"name": "within", "rank": 2.5})
    assert reads.overlaps(await written_since(engine, before))


async def test_take_of_everything_records_the_whole_range(engine: Engine) -> None:
    await seed(engine, ("a", 1.0), ("b", 2.0))
    result = await engine.run_query("items:first_n", {"n": 5})
    assert result.value == ["a", "b"]
    await engine.mutation("items:add", {"name": "far", "rank": 1e9})
    assert result.read_set.overlaps(await written_since(engine, result.ts))


async def run_in_transaction(engine: Engine, snapshot: Snapshot, n: int) -> Transaction:
    """take(n) on items by rank and an insert into counters, in a transaction at ``snapshot``."""
    tx = Transaction(snapshot, engine.deployments.current.model, read_only=False)

    async def ensure_table(name: str) -> Any:
        raise AssertionError(f"unexpected table creation {name}")

    db = DatabaseWriter(tx, PaginationJournal(), ensure_table=ensure_table, now_ms=lambda: 1.0)
    docs = await db.query("items").with_index("by_rank").take(n)
    assert [d["name"] for d in docs] == ["i1", "i2", "i3"][:n]
    await db.insert("counters", {"name": "log", "value": 1.0})
    return tx


@pytest.mark.parametrize(
    ("rank", "conflicts"),
    [(20.0, False), (3.5, False), (2.5, True), (0.5, True), (3.0, True)],
)
async def test_take_conflicts_only_with_writes_within_what_it_read(
    engine: Engine, rank: float, conflicts: bool
) -> None:
    ids = await seed(engine, *((f"i{r}", float(r)) for r in range(1, 6)))
    async with engine.storage.snapshot() as snapshot:
        tx = await run_in_transaction(engine, snapshot, 3)
        snapshot_ts = snapshot.ts
    if rank == 3.0:
        # Changing a document that was read (i3) without moving it conflicts too.
        await engine.mutation("items:set_note", {"id": ids[2], "mode": "changed"})
    else:
        await engine.mutation("items:add", {"name": "concurrent", "rank": rank})
    commit = engine.committer.commit(CommitRequest(snapshot_ts, tx.reads, tx.document_writes()))
    if conflicts:
        with pytest.raises(OccConflictError):
            await commit
    else:
        outcome = await commit
        assert outcome.ts == engine.committer.last_ts


async def test_take_in_a_mutation_is_rerun_only_for_writes_it_read(engine: Engine) -> None:
    await seed(engine, *((f"i{r}", float(r)) for r in range(1, 6)))
    hooks = module_globals(engine.deployments.current.app, "items:take_then_write")
    for rank, expected_attempts in ((20.0, 1), (2.5, 2)):
        gate = asyncio.Event()
        hooks["GATE"][:] = [gate]
        hooks["ATTEMPTS"]["take_then_write"] = 0
        slow = asyncio.create_task(engine.mutation("items:take_then_write", {"n": 3}))
        while hooks["ATTEMPTS"]["take_then_write"] == 0:
            await asyncio.sleep(0)
        await engine.mutation("items:add", {"name": f"at{rank}", "rank": rank})
        gate.set()
        result = await slow
        assert hooks["ATTEMPTS"]["take_then_write"] == expected_attempts
        assert result.value == (["i1", "i2", "i3"] if rank > 3 else ["i1", "i2", "at2.5"])


# -- OCC under concurrency -----------------------------------------------------------------


async def test_concurrent_increments_lose_no_update(engine: Engine) -> None:
    await engine.mutation("counters:create", {"name": "hits"})
    results = await asyncio.gather(
        *(engine.mutation("counters:increment", {"name": "hits"}) for _ in range(50))
    )
    assert sorted(r.value for r in results) == [float(i) for i in range(1, 51)]
    assert len({r.ts for r in results}) == 50
    # Commit order is value order: each increment saw exactly the ones before it.
    by_ts = [r.value for r in sorted(results, key=lambda r: r.ts)]
    assert by_ts == [float(i) for i in range(1, 51)]
    assert await engine.query("counters:value", {"name": "hits"}) == 50.0


async def test_write_skew_is_prevented(engine: Engine) -> None:
    for _ in range(20):
        a, b = (await engine.mutation("accounts:open_pair", {"balance": 50.0})).value
        first, second = await asyncio.gather(
            engine.mutation("accounts:withdraw", {"mine": a, "other": b, "amount": 60.0}),
            engine.mutation("accounts:withdraw", {"mine": b, "other": a, "amount": 60.0}),
        )
        # Under snapshot isolation both would see 100 and withdraw: a + b = -20.
        assert sorted([first.value, second.value]) == [False, True]
        balances = await engine.query("accounts:balances", {"ids": [a, b]})
        assert sorted(balances) == [-10.0, 50.0]
        assert sum(balances) >= 0


# -- patch and replace ---------------------------------------------------------------------


async def test_patch_unset_removes_a_field_and_none_stores_null(engine: Engine) -> None:
    (doc_id,) = await seed(engine, ("a", 1.0))
    doc = (await engine.mutation("items:set_note", {"id": doc_id, "mode": "hello"})).value
    assert doc["note"] == "hello"

    doc = (await engine.mutation("items:set_note", {"id": doc_id, "mode": "null"})).value
    assert "note" in doc and doc["note"] is None
    stored = await engine.query("items:get", {"id": doc_id})
    assert "note" in stored and stored["note"] is None

    doc = (await engine.mutation("items:set_note", {"id": doc_id, "mode": "unset"})).value
    assert "note" not in doc
    stored = await engine.query("items:get", {"id": doc_id})
    assert set(stored) == {"_id", "_creationTime", "name", "rank"}


async def test_replace_keeps_system_fields(engine: Engine) -> None:
    (doc_id,) = await seed(engine, ("a", 1.0))
    await engine.mutation("items:set_note", {"id": doc_id, "mode": "n"})
    before = await engine.query("items:get", {"id": doc_id})
    after = (
        await engine.mutation("items:replace", {"id": doc_id, "value": {"name": "z", "rank": 9.0}})
    ).value
    assert after == {
        "_id": doc_id,
        "_creationTime": before["_creationTime"],
        "name": "z",
        "rank": 9.0,
    }
    assert await engine.query("items:get", {"id": doc_id}) == after
    assert await engine.query("items:by_rank") == ["z"]


async def test_replace_cannot_change_id(engine: Engine) -> None:
    first, second = await seed(engine, ("a", 1.0), ("b", 2.0))
    with pytest.raises(ValidationError, match="'_id' cannot be changed"):
        await engine.mutation(
            "items:replace", {"id": first, "value": {"_id": second, "name": "x", "rank": 0.0}}
        )
    assert (await engine.query("items:get", {"id": first}))["name"] == "a"


# -- schema validation -----------------------------------------------------------------------


async def test_schema_violation_names_the_path_and_writes_nothing(engine: Engine) -> None:
    await seed(engine, ("a", 1.0))
    last_ts = engine.committer.last_ts
    with pytest.raises(ValidationError) as caught:
        await engine.mutation(
            "items:insert_two",
            {"first": {"name": "ok", "rank": 2.0}, "second": {"name": 5.0, "rank": 3.0}},
        )
    assert "items.name" in caught.value.message
    assert "expected string" in caught.value.message
    assert engine.committer.last_ts == last_ts
    assert await engine.query("items:by_rank") == ["a"]


async def test_schema_violation_missing_and_extra_fields(engine: Engine) -> None:
    with pytest.raises(ValidationError, match=r"items\.rank: missing required field"):
        await engine.mutation(
            "items:insert_two", {"first": {"name": "a", "rank": 1.0}, "second": {"name": "b"}}
        )
    with pytest.raises(ValidationError, match="unexpected field 'colour'"):
        await engine.mutation(
            "items:insert_two",
            {
                "first": {"name": "a", "rank": 1.0},
                "second": {"name": "b", "rank": 2.0, "colour": "red"},
            },
        )
    assert await engine.query("items:by_rank") == []


async def test_id_of_another_table_is_rejected(engine: Engine) -> None:
    (item_id,) = await seed(engine, ("a", 1.0))
    counter_id = (await engine.mutation("counters:create", {"name": "c"})).value
    ref = (await engine.mutation("refs:link", {"item": item_id})).value
    assert isinstance(ref, str)
    last_ts = engine.committer.last_ts

    with pytest.raises(ValidationError) as in_args:
        await engine.mutation("refs:link", {"item": counter_id})
    assert in_args.value.message == (
        "args.item: expected id of table 'items', got id of table 'counters'"
    )
    with pytest.raises(ValidationError) as in_document:
        await engine.mutation("refs:link_unchecked", {"item": counter_id})
    assert in_document.value.message == (
        "refs.item: expected id of table 'items', got id of table 'counters'"
    )
    with pytest.raises(ValidationError, match="not a valid document id"):
        await engine.mutation("refs:link", {"item": "not-an-id"})
    assert engine.committer.last_ts == last_ts


async def test_get_of_a_malformed_id_raises(engine: Engine) -> None:
    with pytest.raises(InvalidIdError, match="not a valid document id"):
        await engine.query("items:get", {"id": "nope"})


# -- value limits ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "size", "message"),
    [
        ("string", 1 << 20, "more than the limit of 1048576"),
        (
            "nested",
            16,
            "blobs.data.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x: value is nested more than the limit of 16 levels",
        ),
        ("array", 8193, "blobs.data: array has 8193 elements, more than the limit of 8192"),
    ],
    ids=["size", "depth", "array-length"],
)
async def test_value_over_a_limit_is_refused_and_nothing_written(
    engine: Engine, kind: str, size: int, message: str
) -> None:
    last_ts = engine.committer.last_ts
    with pytest.raises(InvalidValueError) as caught:
        await engine.mutation("blobs:store", {"kind": kind, "size": size})
    assert message in caught.value.message
    assert engine.committer.last_ts == last_ts
    assert await engine.query("blobs:count") == 0


@pytest.mark.parametrize(("kind", "size"), [("nested", 15), ("array", 8192), ("string", 1 << 19)])
async def test_value_at_a_limit_is_stored(engine: Engine, kind: str, size: int) -> None:
    await engine.mutation("blobs:store", {"kind": kind, "size": size})
    assert await engine.query("blobs:count") == 2


# -- pagination ------------------------------------------------------------------------------


async def read_all_pages(engine: Engine, n: int, order: str = "asc") -> list[dict[str, Any]]:
    pages = []
    cursor = None
    for _ in range(100):
        page = await engine.query("items:page", {"cursor": cursor, "n": n, "order": order})
        pages.append(page)
        if page["isDone"]:
            return pages
        cursor = page["continueCursor"]
    raise AssertionError("pagination did not finish")


@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("n", [1, 4, 7, 25, 30])
async def test_pages_are_gapless_and_disjoint(engine: Engine, order: str, n: int) -> None:
    await seed(engine, *((f"i{r:02}", float(r)) for r in range(25)))
    expected = [f"i{r:02}" for r in range(25)]
    if order == "desc":
        expected.reverse()
    pages = await read_all_pages(engine, n, order)
    names = [d["name"] for p in pages for d in p["page"]]
    assert names == expected
    assert all(len(p["page"]) == n for p in pages[:-1])
    assert [p["isDone"] for p in pages] == [False] * (len(pages) - 1) + [True]
    assert pages[-1]["continueCursor"] == "_end"
    cursors = [p["continueCursor"] for p in pages]
    assert len(set(cursors)) == len(cursors)


async def test_paginate_empty_table(engine: Engine) -> None:
    page = await engine.query("items:page", {"cursor": None, "n": 5})
    assert page == {"page": [], "isDone": True, "continueCursor": "_end"}


async def test_journal_keeps_a_page_end_when_documents_arrive_before_it(engine: Engine) -> None:
    await seed(engine, *((f"i{r:02}", float(r)) for r in range(10)))
    first = await engine.run_query("items:page", {"cursor": None, "n": 4})
    assert [d["name"] for d in first.value["page"]] == ["i00", "i01", "i02", "i03"]
    assert first.journal is not None
    end = first.value["continueCursor"]

    await engine.mutation("items:add", {"name": "new-in-page", "rank": 1.5})
    await engine.mutation("items:add", {"name": "new-before-all", "rank": -1.0})
    await engine.mutation("items:add", {"name": "new-after-end", "rank": 3.5})

    rerun = await engine.run_query("items:page", {"cursor": None, "n": 4}, journal=first.journal)
    assert [d["name"] for d in rerun.value["page"]] == [
        "new-before-all",
        "i00",
        "i01",
        "new-in-page",
        "i02",
        "i03",
    ]
    assert rerun.value["continueCursor"] == end
    assert rerun.value["isDone"] is False
    assert rerun.journal == first.journal

    # Without the journal the page shifts instead of growing.
    fresh = await engine.query("items:page", {"cursor": None, "n": 4})
    assert [d["name"] for d in fresh["page"]] == ["new-before-all", "i00", "i01", "new-in-page"]

    # The next page starts right after the kept end: nothing is skipped or repeated.
    second = await engine.query("items:page", {"cursor": end, "n": 4})
    assert [d["name"] for d in second["page"]] == ["new-after-end", "i04", "i05", "i06"]


async def test_journal_of_last_page_keeps_growing(engine: Engine) -> None:
    await seed(engine, ("a", 1.0), ("b", 2.0))
    first = await engine.run_query("items:page", {"cursor": None, "n": 5})
    assert first.value["isDone"] is True
    await engine.mutation("items:add", {"name": "c", "rank": 3.0})
    rerun = await engine.run_query("items:page", {"cursor": None, "n": 5}, journal=first.journal)
    assert [d["name"] for d in rerun.value["page"]] == ["a", "b", "c"]
    assert rerun.value["isDone"] is True
    assert rerun.value["continueCursor"] == "_end"


async def test_paginated_read_set_ends_at_the_page(engine: Engine) -> None:
    await seed(engine, *((f"i{r:02}", float(r)) for r in range(10)))
    first = await engine.run_query("items:page", {"cursor": None, "n": 3})
    await engine.mutation("items:add", {"name": "later", "rank": 7.5})
    assert not first.read_set.overlaps(await written_since(engine, first.ts))
    before = engine.committer.last_ts
    await engine.mutation("items:add", {"name": "inside", "rank": 0.5})
    assert first.read_set.overlaps(await written_since(engine, before))
