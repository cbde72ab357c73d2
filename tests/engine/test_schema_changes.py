"""DeploymentManager.apply: tables, index backfill and drop, schema checks of existing data."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from syncline import SchemaError, SchemaViolationError
from syncline.storage import Catalog
from tests.engine.conftest import Engine, EngineFactory, module_globals, write_app

FUNCTIONS = """
from syncline import mutation, query

GATE = []
STARTED = []


@mutation
async def add(ctx, name, rank, extra=None):
    doc = {"name": name, "rank": rank}
    if extra is not None:
        doc["extra"] = extra
    return await ctx.db.insert("items", doc)


@mutation
async def add_slowly(ctx, name, rank):
    doc_id = await ctx.db.insert("items", {"name": name, "rank": rank})
    STARTED.append(doc_id)
    if GATE:  # a re-run after a deploy runs the new module, whose GATE is empty
        await GATE[0].wait()
    return doc_id


@query
async def by_index(ctx, index):
    return [d["name"] for d in await ctx.db.query("items").with_index(index).collect()]


@query
async def all_names(ctx):
    return [d["name"] for d in await ctx.db.query("items").collect()]


@mutation
async def add_tag(ctx, label):
    return await ctx.db.insert("tags", {"label": label})


@query
async def tags(ctx):
    return [d["label"] for d in await ctx.db.query("tags").collect()]
"""


def schema(items: str, *, indexes: str = "", extra_tables: str = "") -> str:
    return f"""
from syncline import define_schema, define_table, v

schema = define_schema({{
    "items": define_table({items}){indexes},
    {extra_tables}
}})
"""


ITEMS_V1 = '{"name": v.string(), "rank": v.float64(), "extra": v.optional(v.any())}'
ITEMS_STRICT = '{"name": v.string(), "rank": v.float64(), "extra": v.optional(v.string())}'
ITEMS_COLOUR = '{"name": v.string(), "rank": v.float64(), "colour": v.string()}'
BY_RANK = '.index("by_rank", ["rank"])'
BY_NAME_AS_RANK = '.index("by_rank", ["name"])'
TAGS = '"tags": define_table({"label": v.string()}),'


class Apps:
    """Writes numbered app versions under one directory."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._count = 0

    def version(self, schema_source: str) -> Path:
        self._count += 1
        return write_app(
            self._root / f"v{self._count}",
            {"schema.py": schema_source, "items.py": FUNCTIONS},
        )


@pytest.fixture
def apps(tmp_path: Path) -> Apps:
    return Apps(tmp_path / "apps")


@pytest.fixture
async def engine(make_engine: EngineFactory, apps: Apps) -> Engine:
    engine = await make_engine()
    await engine.deploy(apps.version(schema(ITEMS_V1)))
    return engine


async def add(engine: Engine, name: str, rank: float, extra: object = None) -> str:
    doc_id: str = (
        await engine.mutation("items:add", {"name": name, "rank": rank, "extra": extra})
    ).value
    return doc_id


def index_names(catalog: Catalog, table: str) -> dict[str, tuple[str, ...]]:
    number = catalog.tables[table].table_number
    return {i.name: i.fields for i in catalog.indexes[number]}


async def test_first_deploy_creates_tables_with_builtin_indexes(engine: Engine) -> None:
    catalog = await engine.storage.load_catalog()
    assert set(catalog.tables) == {"items", "_scheduled_functions", "_cron_jobs"}
    assert index_names(catalog, "_scheduled_functions")["by_state"] == (
        "state.kind",
        "scheduledTime",
    )
    assert index_names(catalog, "items") == {"by_id": ("_id",), "by_creation_time": ()}
    assert engine.deployments.current.version == 1


async def test_new_index_is_backfilled_in_order(engine: Engine, apps: Apps) -> None:
    for name, rank in (("c", 3.0), ("a", 1.0), ("d", 4.0), ("b", 2.0)):
        await add(engine, name, rank)
    with pytest.raises(SchemaError, match="has no index 'by_rank'"):
        await engine.query("items:by_index", {"index": "by_rank"})

    deployment = await engine.deploy(apps.version(schema(ITEMS_V1, indexes=BY_RANK)))
    assert deployment.version == 2
    assert await engine.query("items:by_index", {"index": "by_rank"}) == ["a", "b", "c", "d"]
    # Writes after the change maintain the backfilled index.
    await add(engine, "ab", 1.5)
    assert await engine.query("items:by_index", {"index": "by_rank"}) == [
        "a",
        "ab",
        "b",
        "c",
        "d",
    ]


async def test_violating_schema_is_refused_and_nothing_changes(engine: Engine, apps: Apps) -> None:
    await engine.deploy(apps.version(schema(ITEMS_V1, indexes=BY_RANK)))
    fine = await add(engine, "fine", 1.0, "text")
    bad = [await add(engine, "num", 2.0, 5.0), await add(engine, "list", 3.0, ["x"])]
    await add(engine, "absent", 4.0)
    live = engine.deployments.current
    catalog_before = await engine.storage.load_catalog()
    ts_before = engine.committer.last_ts

    # The new version also adds a table and changes an index; none of it may happen.
    refused = apps.version(schema(ITEMS_STRICT, indexes=BY_NAME_AS_RANK, extra_tables=TAGS))
    with pytest.raises(SchemaViolationError) as caught:
        await engine.deploy(refused)
    assert caught.value.offending_ids == {"items": bad}
    assert fine not in caught.value.message
    for doc_id in bad:
        assert doc_id in caught.value.message
    assert "items.extra: expected string" in caught.value.message

    assert engine.deployments.current is live
    assert await engine.storage.load_catalog() == catalog_before
    assert engine.committer.last_ts == ts_before
    assert await engine.query("items:by_index", {"index": "by_rank"}) == [
        "fine",
        "num",
        "list",
        "absent",
    ]
    # The old version keeps serving writes.
    await add(engine, "after", 5.0, 6.0)
    assert (await engine.query("items:all_names"))[-1] == "after"


async def test_new_required_field_lists_every_document(engine: Engine, apps: Apps) -> None:
    ids = [await add(engine, f"d{i}", float(i)) for i in range(3)]
    with pytest.raises(SchemaViolationError) as caught:
        await engine.deploy(apps.version(schema(ITEMS_COLOUR)))
    assert caught.value.offending_ids == {"items": ids}
    assert "items.colour: missing required field" in caught.value.message
    assert engine.deployments.current.version == 1


async def test_removing_an_index_drops_it_and_its_entries(engine: Engine, apps: Apps) -> None:
    await engine.deploy(apps.version(schema(ITEMS_V1, indexes=BY_RANK)))
    await add(engine, "a", 1.0)
    await add(engine, "b", 2.0)
    catalog = await engine.storage.load_catalog()
    table_number = catalog.tables["items"].table_number
    by_rank = catalog.index(table_number, "by_rank")
    assert by_rank is not None

    await engine.deploy(apps.version(schema(ITEMS_V1)))
    catalog = await engine.storage.load_catalog()
    assert catalog.index(table_number, "by_rank") is None
    assert set(index_names(catalog, "items")) == {"by_id", "by_creation_time"}
    with pytest.raises(SchemaError, match="has no index 'by_rank'"):
        await engine.query("items:by_index", {"index": "by_rank"})
    async with engine.storage.snapshot() as snapshot:
        assert await snapshot.scan(by_rank.index_id, b"", None, descending=False, limit=10) == []
    assert await engine.query("items:all_names") == ["a", "b"]


async def test_changing_index_fields_rebuilds_it(engine: Engine, apps: Apps) -> None:
    await engine.deploy(apps.version(schema(ITEMS_V1, indexes=BY_RANK)))
    for name, rank in (("b", 1.0), ("c", 2.0), ("a", 3.0)):
        await add(engine, name, rank)
    assert await engine.query("items:by_index", {"index": "by_rank"}) == ["b", "c", "a"]
    await engine.deploy(apps.version(schema(ITEMS_V1, indexes=BY_NAME_AS_RANK)))
    assert await engine.query("items:by_index", {"index": "by_rank"}) == ["a", "b", "c"]
    catalog = await engine.storage.load_catalog()
    assert index_names(catalog, "items")["by_rank"] == ("name",)


async def test_adding_a_table_creates_it(engine: Engine, apps: Apps) -> None:
    with pytest.raises(SchemaError, match="'tags' is not in the schema"):
        await engine.mutation("items:add_tag", {"label": "x"})
    await engine.deploy(apps.version(schema(ITEMS_V1, extra_tables=TAGS)))
    catalog = await engine.storage.load_catalog()
    assert {"items", "tags"} <= set(catalog.tables)
    assert index_names(catalog, "tags") == {"by_id": ("_id",), "by_creation_time": ()}
    await engine.mutation("items:add_tag", {"label": "x"})
    await engine.mutation("items:add_tag", {"label": "y"})
    assert await engine.query("items:tags") == ["x", "y"]


async def test_reapplying_the_same_app_changes_nothing(engine: Engine, apps: Apps) -> None:
    directory = apps.version(schema(ITEMS_V1, indexes=BY_RANK))
    await engine.deploy(directory)
    await add(engine, "a", 1.0)
    catalog = await engine.storage.load_catalog()
    deployment = await engine.deploy(directory)
    assert await engine.storage.load_catalog() == catalog
    assert deployment.version == 3
    assert await engine.query("items:by_index", {"index": "by_rank"}) == ["a"]


async def test_mutation_in_flight_during_index_backfill_lands_in_the_new_index(
    engine: Engine, apps: Apps
) -> None:
    await add(engine, "old", 1.0)
    hooks = module_globals(engine.deployments.current.app, "items:add_slowly")
    gate = asyncio.Event()
    hooks["GATE"][:] = [gate]
    slow = asyncio.create_task(engine.mutation("items:add_slowly", {"name": "slow", "rank": 2.0}))
    while not hooks["STARTED"]:
        await asyncio.sleep(0)
    await engine.deploy(apps.version(schema(ITEMS_V1, indexes=BY_RANK)))
    gate.set()
    await slow
    assert await engine.query("items:all_names") == ["old", "slow"]
    assert await engine.query("items:by_index", {"index": "by_rank"}) == ["old", "slow"]


BY_NAME = '.index("by_name", ["name"])'


async def test_mutation_in_flight_during_index_drop_leaves_no_stray_entries(
    engine: Engine, apps: Apps
) -> None:
    await engine.deploy(apps.version(schema(ITEMS_V1, indexes=BY_RANK)))
    await add(engine, "old", 1.0)
    hooks = module_globals(engine.deployments.current.app, "items:add_slowly")
    gate = asyncio.Event()
    hooks["GATE"][:] = [gate]
    slow = asyncio.create_task(engine.mutation("items:add_slowly", {"name": "slow", "rank": 2.0}))
    while not hooks["STARTED"]:
        await asyncio.sleep(0)
    await engine.deploy(apps.version(schema(ITEMS_V1)))
    gate.set()
    await slow
    await engine.deploy(apps.version(schema(ITEMS_V1, indexes=BY_NAME)))
    assert await engine.query("items:by_index", {"index": "by_name"}) == ["old", "slow"]


SCHEMALESS_COUNTER = """
from syncline import mutation, query

@mutation
async def bump(ctx, name):
    doc = await ctx.db.query("counters").filter(lambda d: d["name"] == name).first()
    if doc is None:
        await ctx.db.insert("counters", {"name": name, "value": 1.0})
    else:
        await ctx.db.patch(doc["_id"], {"value": doc["value"] + 1.0})

@query
async def all(ctx):
    return [[d["name"], d["value"]] for d in await ctx.db.query("counters").collect()]
"""


async def test_concurrent_first_inserts_into_a_new_schemaless_table_serialize(
    make_engine: EngineFactory, tmp_path: Path
) -> None:
    # Reads of a table that does not exist yet name no real index; creating the
    # table must still conflict with them, or every racer inserts its own row.
    engine = await make_engine()
    await engine.deploy(write_app(tmp_path / "schemaless", {"counters.py": SCHEMALESS_COUNTER}))
    await asyncio.gather(*(engine.mutation("counters:bump", {"name": "x"}) for _ in range(8)))
    assert await engine.query("counters:all") == [["x", 8.0]]
