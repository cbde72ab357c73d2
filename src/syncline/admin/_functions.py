"""The system functions behind the admin dashboard (``_system/<module>:<name>``).

Queries need an admin key allowing ``read`` (or ``run``); mutations one allowing
``run``. Queries are reactive like any other: the dashboard subscribes to them
over the sync protocol, so its views follow commits, the log tail and the
cluster's health live. Writes go through ``ctx.db`` and are checked against the
schema like a function's; Syncline's own tables stay read-only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from syncline._errors import ValidationError
from syncline.database import DatabaseReader, IndexRange, TableInfo
from syncline.functions import LEVELS, FunctionKind, FunctionSpec
from syncline.jobs import CRON_JOBS, SCHEDULED_FUNCTIONS
from syncline.jobs import SYSTEM_TABLES as JOB_TABLES
from syncline.runtime import (
    LOG_ROOM,
    SystemMutationCtx,
    SystemQueryCtx,
    system_function,
    system_registry,
)
from syncline.schema import BY_CREATION_TIME
from syncline.values import v
from syncline.verify._functions import VERIFY_FUNCTIONS
from syncline.verify._tables import VERIFY_TABLES

MAX_PAGE_ITEMS = 200
_COUNT = v.union(v.float64(), v.int64())
"""A count: a number from JavaScript, an int from Python."""
JOB_STATES = ("pending", "inProgress", "success", "failed", "canceled")


def _reader_for(ctx: SystemQueryCtx, table: str) -> DatabaseReader:
    return ctx.db.system if table.startswith("_") else ctx.db


def _table_info(ctx: SystemQueryCtx | SystemMutationCtx, table: str) -> TableInfo:
    info = ctx.deployment.model.table(table)
    if info is None:
        raise ValidationError(f"table {table!r} does not exist")
    return info


# -- deployment ------------------------------------------------------------------------


@system_function(FunctionKind.QUERY, {})
async def describe(ctx: SystemQueryCtx) -> dict[str, Any]:
    """The live version: its tables (with indexes and validators) and functions, and
    the versions deployed so far (newest first)."""
    deployment = ctx.deployment
    tables = [
        {
            "name": table.name,
            "system": table.name.startswith("_"),
            "indexes": [
                {"name": index.name, "fields": list(index.fields)}
                for index in sorted(table.indexes.values(), key=lambda i: i.name)
            ],
            "validator": None if table.validator is None else repr(table.validator),
        }
        for table in deployment.model.tables
    ]
    functions = [
        {
            "path": path,
            "kind": spec.kind.value,
            "visibility": spec.visibility.value,
            "args": None if spec.args is None else repr(spec.args),
        }
        for path, spec in sorted(deployment.app.functions.items())
    ]
    versions = [record.to_value() for record in reversed(ctx.versions)]
    return {
        "version": float(deployment.version),
        "deployedAt": versions[0]["deployedAt"] if versions else None,
        "versions": versions,
        "mode": ctx.mode,
        "tables": tables,
        "functions": functions,
    }


# -- data ------------------------------------------------------------------------------


@system_function(
    FunctionKind.QUERY,
    {
        "table": v.string(),
        "index": v.optional(v.string()),
        "eq": v.optional(v.array(v.any())),
        "order": v.optional(v.union(v.literal("asc"), v.literal("desc"))),
        "cursor": v.optional(v.union(v.string(), v.null())),
        "numItems": v.optional(_COUNT),
    },
)
async def page(
    ctx: SystemQueryCtx,
    table: str,
    index: str | None = None,
    eq: list[Any] | None = None,
    order: str | None = None,
    cursor: str | None = None,
    numItems: float | None = None,
) -> dict[str, Any]:
    """A page of ``table`` in ``index`` order, its leading fields equal to ``eq``."""
    info = _table_info(ctx, table)
    index_name = index or BY_CREATION_TIME
    meta = info.indexes.get(index_name)
    if meta is None:
        raise ValidationError(f"table {table!r} has no index {index_name!r}")
    values = eq or []
    if len(values) > len(meta.fields):
        raise ValidationError(
            f"index {index_name!r} covers {', '.join(meta.fields)}: at most "
            f"{len(meta.fields)} values to match, got {len(values)}"
        )
    items = 50 if numItems is None else int(numItems)
    if not 1 <= items <= MAX_PAGE_ITEMS:
        raise ValidationError(f"numItems must be 1 to {MAX_PAGE_ITEMS}, got {numItems:g}")

    def prefix(q: IndexRange) -> IndexRange:
        for field_name, value in zip(meta.fields, values, strict=False):
            q = q.eq(field_name, value)
        return q

    range_fn: Callable[[IndexRange], IndexRange] | None = prefix if values else None
    rows = _reader_for(ctx, table).query(table).with_index(index_name, range_fn)
    return await rows.order(order or "desc").paginate({"cursor": cursor, "numItems": items})


@system_function(
    FunctionKind.MUTATION, {"table": v.string(), "document": v.record(v.string(), v.any())}
)
async def insert(ctx: SystemMutationCtx, table: str, document: dict[str, Any]) -> str:
    """Insert a document into an app table (checked against its schema)."""
    if table.startswith("_"):
        raise ValidationError(f"table {table!r} is one of Syncline's own tables: read-only")
    return await ctx.db.insert(table, _without_system_fields(document))


@system_function(
    FunctionKind.MUTATION, {"id": v.string(), "document": v.record(v.string(), v.any())}
)
async def replace(ctx: SystemMutationCtx, id: str, document: dict[str, Any]) -> None:
    """Replace an app document's fields (``_id`` and ``_creationTime`` stay)."""
    await ctx.db.replace(id, _without_system_fields(document))


@system_function(FunctionKind.MUTATION, {"id": v.string()})
async def delete(ctx: SystemMutationCtx, id: str) -> None:
    await ctx.db.delete(id)


def _without_system_fields(document: dict[str, Any]) -> dict[str, Any]:
    return {k: value for k, value in document.items() if k not in ("_id", "_creationTime")}


# -- schedules -------------------------------------------------------------------------


@system_function(
    FunctionKind.QUERY,
    {
        "state": v.optional(v.union(*(v.literal(s) for s in JOB_STATES))),
        "limit": v.optional(_COUNT),
    },
)
async def list_jobs(
    ctx: SystemQueryCtx, state: str | None = None, limit: float | None = None
) -> list[Any]:
    """Scheduled jobs, newest first (those in ``state`` only, if given)."""
    count = 100 if limit is None else int(limit)
    if not 1 <= count <= MAX_PAGE_ITEMS:
        raise ValidationError(f"limit must be 1 to {MAX_PAGE_ITEMS}, got {limit:g}")
    jobs = ctx.db.system.query(SCHEDULED_FUNCTIONS)
    if state is None:
        return await jobs.order("desc").take(count)
    by_state = jobs.with_index("by_state", lambda q: q.eq("state.kind", state))
    return await by_state.order("desc").take(count)


@system_function(FunctionKind.QUERY, {})
async def crons(ctx: SystemQueryCtx) -> list[Any]:
    """The live crons, by name, with when each runs next."""
    return await ctx.db.system.query(CRON_JOBS).with_index("by_name").collect()


@system_function(FunctionKind.MUTATION, {"id": v.string()})
async def cancel(ctx: SystemMutationCtx, id: str) -> None:
    """Cancel a job that has not finished (a finished one is left as it is)."""
    await ctx.scheduler.cancel(id)


# -- logs and health -------------------------------------------------------------------


@system_function(
    FunctionKind.QUERY,
    {
        "path": v.optional(v.string()),
        "level": v.optional(v.union(*(v.literal(level) for level in LEVELS))),
        "limit": v.optional(_COUNT),
    },
)
async def tail(
    ctx: SystemQueryCtx,
    path: str | None = None,
    level: str | None = None,
    limit: float | None = None,
) -> list[dict[str, Any]]:
    """Recent function log entries, oldest first: of one function (``path``, or
    every function of a module, ``"messages"``), at ``level`` or more severe."""
    count = 100 if limit is None else int(limit)
    if not 1 <= count <= MAX_PAGE_ITEMS:
        raise ValidationError(f"limit must be 1 to {MAX_PAGE_ITEMS}, got {limit:g}")
    least = LEVELS.index(level) if level else 0
    entries = []
    for message in await ctx.presence.messages(LOG_ROOM):
        body = message["body"]
        if LEVELS.index(body["level"]) < least or not _path_matches(body["path"], path):
            continue
        entries.append({"time": message["sentAt"], **body})
    return entries[-count:]


def _path_matches(entry_path: str, wanted: str | None) -> bool:
    if not wanted:
        return True
    return entry_path == wanted or entry_path.startswith(wanted.rstrip(":") + ":")


@system_function(FunctionKind.QUERY, {})
async def cluster(ctx: SystemQueryCtx) -> dict[str, Any] | None:
    """Regions, nodes, leaders, replication lag and commit rate, as this node sees
    them; re-runs whenever that view changes."""
    return ctx.health()


def _registry() -> dict[str, FunctionSpec]:
    named = {
        "deployment:describe": describe,
        "data:page": page,
        "data:insert": insert,
        "data:replace": replace,
        "data:delete": delete,
        "jobs:list": list_jobs,
        "jobs:crons": crons,
        "jobs:cancel": cancel,
        "logs:tail": tail,
        "health:cluster": cluster,
    }
    return {**system_registry(named), **VERIFY_FUNCTIONS}


SYSTEM_FUNCTIONS = _registry()
"""Every system function by path: the dashboard's and the verification app's."""

SYSTEM_TABLES = {**JOB_TABLES, **VERIFY_TABLES}
"""Every table of Syncline's own, with its indexes: what each version creates."""
