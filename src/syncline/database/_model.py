"""The data model: the stored catalog joined with the app's schema.

It answers "which table is this id in", "what are this document's index keys"
and "is this document valid", for transactions and for schema changes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from syncline._errors import InvalidIdError, SchemaError, ValidationError
from syncline.schema import SchemaDefinition, check_table_name
from syncline.storage import Catalog, Document, IndexMeta, TableMeta
from syncline.values import (
    MISSING,
    Validator,
    check_value,
    encode_index_key,
    id_table_number,
    new_id,
)


class _Unset:
    """Marker for ``ctx.db.patch``: a field set to UNSET is removed."""

    _instance: _Unset | None = None

    def __new__(cls) -> _Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset()


def field_value(doc: Document, path: str) -> object:
    """The value at a dotted path, or MISSING."""
    value: object = doc
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


def index_key(index: IndexMeta, doc: Document) -> bytes:
    return encode_index_key([field_value(doc, f) for f in index.key_fields])


@dataclass(frozen=True)
class TableInfo:
    meta: TableMeta
    indexes: dict[str, IndexMeta]
    validator: Validator | None

    @property
    def name(self) -> str:
        return self.meta.name


class DataModel:
    """An immutable view of tables, indexes and validators at one app version."""

    def __init__(
        self, catalog: Catalog, schema: SchemaDefinition | None, *, catalog_version: int = 0
    ) -> None:
        self.catalog = catalog
        self.schema = schema
        self.catalog_version = catalog_version
        """Changes whenever tables or indexes change; commits are checked against it."""
        self._by_name: dict[str, TableInfo] = {}
        self._by_number: dict[int, TableInfo] = {}
        for meta in catalog.tables.values():
            validator = None
            if schema is not None and schema.schema_validation and meta.name in schema.tables:
                validator = schema.tables[meta.name].validator
            info = TableInfo(
                meta, {i.name: i for i in catalog.indexes.get(meta.table_number, [])}, validator
            )
            self._by_name[meta.name] = info
            self._by_number[meta.table_number] = info
        self.index_ids = frozenset(
            index.index_id for indexes in catalog.indexes.values() for index in indexes
        )
        """Every index of the catalog, by id (commits may read only these)."""

    def table(self, name: object) -> TableInfo | None:
        if not isinstance(name, str):
            return None
        return self._by_name.get(name)

    def table_by_number(self, number: int) -> TableInfo | None:
        return self._by_number.get(number)

    @property
    def tables(self) -> list[TableInfo]:
        """Every table, system tables too, by name."""
        return [self._by_name[name] for name in sorted(self._by_name)]

    def require_table(self, name: object, *, system: bool = False) -> TableInfo:
        check_table_name(name, system=system)
        assert isinstance(name, str)
        info = self._by_name.get(name)
        if info is None:
            raise SchemaError(f"table {name!r} does not exist")
        return info

    def table_of_id(self, doc_id: object) -> TableInfo | None:
        if not isinstance(doc_id, str):
            return None
        number = id_table_number(doc_id)
        return self._by_number.get(number) if number is not None else None

    def id_table_name(self, doc_id: str) -> str | None:
        info = self.table_of_id(doc_id)
        return info.name if info else None

    def require_id(self, doc_id: object, *, what: str = "id") -> TableInfo | None:
        """The table of a syntactically valid id (None if that table does not exist)."""
        if not isinstance(doc_id, str) or id_table_number(doc_id) is None:
            raise InvalidIdError(f"{what}: {str(doc_id)[:64]!r} is not a valid document id")
        return self.table_of_id(doc_id)

    def is_schemaless(self, table_name: str) -> bool:
        return self.schema is None or table_name not in self.schema.tables

    def new_document(self, table: TableInfo, value: Document, *, now_ms: float | None) -> Document:
        doc_id = new_id(table.meta.table_number)
        created = now_ms if now_ms is not None else time.time() * 1000.0
        return {"_id": doc_id, "_creationTime": created, **value}

    def check_document(self, table: TableInfo, doc: Document, *, path: str = "document") -> int:
        """Enforce Convex's value limits and the table's validator; the document's
        size in bytes (as Convex JSON)."""
        size = check_value(doc, path=path)
        if table.validator is not None:
            user_fields = {k: v for k, v in doc.items() if k not in ("_id", "_creationTime")}
            table.validator.validate(user_fields, path, id_table=self.id_table_name)
        return size

    def index_changes(
        self, table: TableInfo, old: Document | None, new: Document | None
    ) -> list[tuple[IndexMeta, bytes | None, bytes | None]]:
        # Every index entry of a written document counts as written, even when its
        # key is unchanged: a reader of that entry read the document's contents.
        changes: list[tuple[IndexMeta, bytes | None, bytes | None]] = []
        for index in table.indexes.values():
            old_key = index_key(index, old) if old is not None else None
            new_key = index_key(index, new) if new is not None else None
            changes.append((index, old_key, new_key))
        return changes


def check_user_fields(value: object, *, path: str, allow_system: bool = False) -> Document:
    """A document body from user code: an object without reserved ``_`` fields."""
    if not isinstance(value, dict):
        raise ValidationError(f"{path}: expected object, got {type(value).__name__}")
    if not allow_system:
        for key in value:
            if isinstance(key, str) and key.startswith("_"):
                raise ValidationError(
                    f"{path}: field {key!r} is reserved (system fields start with '_')"
                )
    return value
