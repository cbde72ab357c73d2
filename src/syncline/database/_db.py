"""``ctx.db``: the database as functions see it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from syncline._errors import SchemaError
from syncline.database._model import DataModel, TableInfo
from syncline.database._query import PaginationJournal, Query
from syncline.database._transaction import ReadOnlyError, Transaction
from syncline.schema import check_table_name
from syncline.storage import Document, IndexMeta, TableMeta
from syncline.values import id_table_number

EnsureTable = Callable[[str], Awaitable[DataModel]]


class DatabaseReader:
    """``ctx.db`` in a query: get, query, normalize_id; ``system`` for ``_`` tables."""

    def __init__(
        self, tx: Transaction, journal: PaginationJournal, *, system: bool = False
    ) -> None:
        self._tx = tx
        self._journal = journal
        self._system = system

    @property
    def system(self) -> DatabaseReader:
        """System tables such as ``_scheduled_functions`` (read-only)."""
        return DatabaseReader(self._tx, self._journal, system=True)

    def _table(self, name: object) -> TableInfo:
        check_table_name(name, system=self._system)
        assert isinstance(name, str)
        table = self._tx.model.table(name)
        if table is None:
            if self._system or not self._tx.model.is_schemaless(name):
                raise SchemaError(f"table {name!r} does not exist")
            return _empty_table(name)
        return table

    async def get(self, doc_id: object) -> Document | None:
        table = self._tx.model.require_id(doc_id, what="db.get")
        if table is not None and table.name.startswith("_") != self._system:
            return None
        return await self._tx.get(doc_id)

    def query(self, table: str) -> Query:
        return Query(self._tx, self._table(table), self._journal)

    def normalize_id(self, table: str, doc_id: object) -> str | None:
        """``doc_id`` if it is a valid id of ``table``, else None."""
        info = self._table(table)
        if not isinstance(doc_id, str) or id_table_number(doc_id) != info.meta.table_number:
            return None
        return doc_id

    # Writes from a query fail with a clear error rather than an AttributeError.
    async def insert(self, table: str, value: object) -> str:
        raise ReadOnlyError(f"db.insert({table!r}): queries are read-only; write from a mutation")

    async def patch(self, doc_id: object, fields: object) -> None:
        raise ReadOnlyError("db.patch: queries are read-only; write from a mutation")

    async def replace(self, doc_id: object, value: object) -> None:
        raise ReadOnlyError("db.replace: queries are read-only; write from a mutation")

    async def delete(self, doc_id: object) -> None:
        raise ReadOnlyError("db.delete: queries are read-only; write from a mutation")


class DatabaseWriter(DatabaseReader):
    """``ctx.db`` in a mutation: reads plus insert, patch, replace, delete."""

    def __init__(
        self,
        tx: Transaction,
        journal: PaginationJournal,
        *,
        ensure_table: EnsureTable,
        now_ms: Callable[[], float],
    ) -> None:
        super().__init__(tx, journal)
        self._ensure_table = ensure_table
        self._now_ms = now_ms

    async def insert(self, table: str, value: object) -> str:
        check_table_name(table)
        info = self._tx.model.table(table)
        if info is None:
            if not self._tx.model.is_schemaless(table):
                raise SchemaError(f"table {table!r} does not exist")
            if self._tx.model.schema is not None:
                raise SchemaError(
                    f"table {table!r} is not in the schema; add it to schema.py to write to it"
                )
            self._tx.model = await self._ensure_table(table)
            info = self._tx.model.table(table)
            assert info is not None
        return await self._tx.insert(info, value, now_ms=self._now_ms())

    async def patch(self, doc_id: object, fields: object) -> None:
        self._check_user_id(doc_id, "db.patch")
        await self._tx.patch(doc_id, fields)

    async def replace(self, doc_id: object, value: object) -> None:
        self._check_user_id(doc_id, "db.replace")
        await self._tx.replace(doc_id, value)

    async def delete(self, doc_id: object) -> None:
        self._check_user_id(doc_id, "db.delete")
        await self._tx.delete(doc_id)

    def _check_user_id(self, doc_id: object, what: str) -> None:
        table = self._tx.model.require_id(doc_id, what=what)
        if table is not None and table.name.startswith("_"):
            raise SchemaError(f"{what}: system documents cannot be written by functions")


def _empty_table(name: str) -> TableInfo:
    """A schemaless table never written to: it reads as empty.

    Its reads name no real index, so creating the table is a catalog change that
    re-runs every subscription.
    """
    indexes = {
        "by_id": IndexMeta(-1, -1, "by_id", ("_id",)),
        "by_creation_time": IndexMeta(-2, -1, "by_creation_time", ()),
    }
    return TableInfo(TableMeta(-1, name), indexes, None)
