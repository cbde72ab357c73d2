"""The live app version and its data model, and how a new version goes live.

Applying an app checks every existing document against the new schema,
creates missing tables and backfills new indexes while commits are held off,
and only then swaps the version in, so no function ever runs against an
index that is not complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from syncline._errors import SchemaViolationError, SynclineError
from syncline.app import App
from syncline.database import DataModel, index_key
from syncline.jobs import SYSTEM_TABLES
from syncline.schema import BY_CREATION_TIME, BY_ID, IndexDefinition, builtin_indexes
from syncline.storage import Catalog, IndexMeta, Storage
from syncline.txn import Committer

log = logging.getLogger(__name__)

MAX_REPORTED_VIOLATIONS = 20
CATALOG_VERSION_KEY = "catalog_version"
"""Meta key holding the catalog version: changes whenever tables or indexes change."""


SystemTables = Mapping[str, tuple[IndexDefinition, ...]]


def _wanted_indexes(
    app: App, system_tables: SystemTables
) -> dict[str, tuple[IndexDefinition, ...]]:
    """The tables a version needs, with their indexes: the system tables, and the
    schema's tables (a schemaless app's tables keep the built-in indexes only)."""
    wanted = dict(system_tables)
    if app.schema is not None:
        wanted.update({name: tuple(t.indexes) for name, t in app.schema.tables.items()})
    return wanted


def _shape(catalog: Catalog) -> tuple[object, ...]:
    tables = sorted((t.name, t.table_number) for t in catalog.tables.values())
    indexes = sorted(
        (i.index_id, i.table_number, i.name, i.fields)
        for table_indexes in catalog.indexes.values()
        for i in table_indexes
    )
    return (tuple(tables), tuple(indexes))


@dataclass(frozen=True)
class Deployment:
    """One live version: the app's code and the data model it runs against."""

    app: App
    model: DataModel
    version: int


class DeploymentSource(Protocol):
    """Where a function runner gets the live deployment from."""

    @property
    def current(self) -> Deployment: ...

    async def ensure_table(self, name: str) -> DataModel:
        """Create a table on first insert into a schemaless app; the new model."""
        ...

    async def refresh(self) -> None:
        """Reload after a commit was refused because the tables or indexes changed."""
        ...

    async def wait_stable(self) -> None:
        """Return once no new version is half-applied (call before opening a snapshot)."""
        ...


class DeploymentManager:
    """Holds the live deployment; ``apply`` moves to a new app version."""

    def __init__(
        self, storage: Storage, committer: Committer, *, system_tables: SystemTables = SYSTEM_TABLES
    ) -> None:
        """``system_tables``: Syncline's own tables every version has (with indexes)."""
        self._storage = storage
        self._committer = committer
        self._system_tables = system_tables
        self._current: Deployment | None = None
        self._catalog_version: int | None = None
        self._stable = asyncio.Event()
        self._stable.set()
        """Cleared while a version is being applied: an index may be half-replaced, so
        no new snapshot may be read through the old model. Snapshots opened before
        still read the catalog as it was (snapshot isolation), so they stay correct."""
        self._listeners: list[Callable[[Deployment], None]] = []

    @property
    def current(self) -> Deployment:
        if self._current is None:
            raise SynclineError("no app is deployed yet")
        return self._current

    def on_change(self, listener: Callable[[Deployment], None]) -> None:
        """Called after every new version or catalog change (subscriptions re-run)."""
        self._listeners.append(listener)

    @contextlib.asynccontextmanager
    async def _unstable(self) -> AsyncIterator[None]:
        self._stable.clear()
        try:
            yield
        finally:
            self._stable.set()

    def _publish(self, deployment: Deployment) -> None:
        self._current = deployment
        for listener in self._listeners:
            listener(deployment)

    async def apply(self, app: App, *, version: int | None = None) -> Deployment:
        """Make ``app`` live, or raise (SchemaViolationError lists offending ids).

        ``version``: its number (default: one more than the live one's)."""
        async with self._committer.exclusive(), self._unstable():
            before = catalog = await self._storage.load_catalog()
            if app.schema is not None:
                await self._check_documents(app, catalog)
            wanted = _wanted_indexes(app, self._system_tables)
            for name in wanted:
                if name not in catalog.tables:
                    await self._create_table(name)
            catalog = await self._storage.load_catalog()
            await self._sync_indexes(wanted, catalog)
            catalog = await self._storage.load_catalog()
            if version is None:
                version = self._current.version + 1 if self._current else 1
            model = await self._new_model(before, catalog, app)
            deployment = Deployment(app, model, version)
            self._publish(deployment)
        return deployment

    async def refresh(self) -> None:
        """Nothing to reload: this manager is where catalog changes happen."""

    async def wait_stable(self) -> None:
        await self._stable.wait()

    async def ensure_table(self, name: str) -> DataModel:
        """Create a schemaless table on first insert; returns the new model."""
        async with self._committer.exclusive(), self._unstable():
            before = catalog = await self._storage.load_catalog()
            if name not in catalog.tables:
                await self._create_table(name)
                catalog = await self._storage.load_catalog()
            current = self.current
            model = await self._new_model(before, catalog, current.app)
            deployment = Deployment(current.app, model, current.version)
            self._publish(deployment)
        return deployment.model

    async def _new_model(self, before: Catalog, after: Catalog, app: App) -> DataModel:
        """The model for ``after``. Called holding ``exclusive()``. When tables or indexes
        changed, the catalog version moves on (it is stored, so a new leader continues
        it), and mutations whose index writes were computed against the previous
        catalog can no longer commit."""
        if self._catalog_version is None:
            stored = await self._storage.get_meta(CATALOG_VERSION_KEY)
            self._catalog_version = int(stored) if stored else 0
        if _shape(before) != _shape(after) or self._catalog_version == 0:
            self._catalog_version += 1
            await self._storage.set_meta(
                CATALOG_VERSION_KEY, str(self._catalog_version), epoch=self._committer.epoch
            )
        self._committer.set_catalog_version(self._catalog_version)
        return DataModel(after, app.schema, catalog_version=self._catalog_version)

    async def _create_table(self, name: str) -> None:
        table = await self._storage.create_table(name)
        for index in builtin_indexes():
            await self._storage.create_index(table.table_number, index.name, index.fields, [])

    async def _check_documents(self, app: App, catalog: Catalog) -> None:
        assert app.schema is not None
        model = DataModel(catalog, app.schema)
        offending: dict[str, list[str]] = {}
        first_error = ""
        async with self._storage.snapshot() as snapshot:
            for name in app.schema.tables:
                table = model.table(name)
                if table is None or table.validator is None:
                    continue
                for doc in await snapshot.table_documents(table.meta.table_number):
                    try:
                        model.check_document(table, doc, path=name)
                    except SynclineError as exc:
                        ids = offending.setdefault(name, [])
                        if len(ids) < MAX_REPORTED_VIOLATIONS:
                            ids.append(str(doc["_id"]))
                        first_error = first_error or exc.message
        if offending:
            listing = "; ".join(f"{t}: {', '.join(ids)}" for t, ids in offending.items())
            raise SchemaViolationError(
                f"existing documents do not match the new schema ({first_error}). "
                f"Offending ids: {listing}",
                offending_ids=offending,
            )

    async def _sync_indexes(
        self, wanted_by_table: dict[str, tuple[IndexDefinition, ...]], catalog: Catalog
    ) -> None:
        for name, definitions in wanted_by_table.items():
            table = catalog.tables[name]
            existing = {i.name: i for i in catalog.indexes.get(table.table_number, [])}
            wanted = {i.name: i for i in definitions}
            for index_name, index in existing.items():
                if index_name in (BY_ID, BY_CREATION_TIME):
                    continue
                if index_name not in wanted or wanted[index_name].fields != index.fields:
                    log.info("dropping index %s.%s", name, index_name)
                    await self._storage.drop_index(index.index_id)
            for index_name, definition_index in wanted.items():
                current = existing.get(index_name)
                if current is not None and current.fields == definition_index.fields:
                    continue
                await self._backfill(table.table_number, index_name, definition_index.fields)

    async def _backfill(self, table_number: int, name: str, fields: tuple[str, ...]) -> None:
        probe = IndexMeta(-1, table_number, name, fields)
        async with self._storage.snapshot() as snapshot:
            docs = await snapshot.table_documents(table_number)
        entries = [(index_key(probe, doc), str(doc["_id"])) for doc in docs]
        # A new table's indexes (every first deploy) start empty: not worth a line.
        level = logging.INFO if entries else logging.DEBUG
        log.log(level, "backfilling index %s over %d documents", name, len(entries))
        await self._storage.create_index(table_number, name, fields, entries)
