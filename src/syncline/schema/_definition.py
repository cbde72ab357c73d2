"""``define_schema`` / ``define_table``: the shape of an app's data.

Every table has two built-in indexes, ``by_id`` and ``by_creation_time``; a
user index's key is its fields followed by ``_creationTime`` and ``_id``, so
index keys are unique and ties sort by creation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from syncline._errors import SchemaError
from syncline.values import Validator, as_validator

BY_ID = "by_id"
BY_CREATION_TIME = "by_creation_time"
SYSTEM_FIELDS = ("_id", "_creationTime")

_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_SYSTEM_TABLE_NAME = re.compile(r"^_[A-Za-z][A-Za-z0-9_]{0,63}$")
_INDEX_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_FIELD_PATH = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
MAX_INDEXES_PER_TABLE = 32
MAX_INDEX_FIELDS = 16


@dataclass(frozen=True)
class IndexDefinition:
    """An index's name and the document fields (dotted paths) it orders by."""

    name: str
    fields: tuple[str, ...]


def builtin_indexes() -> tuple[IndexDefinition, IndexDefinition]:
    return (IndexDefinition(BY_ID, ("_id",)), IndexDefinition(BY_CREATION_TIME, ()))


@dataclass
class TableDefinition:
    """A table's document validator (None: any document) and its indexes."""

    validator: Validator | None
    indexes: list[IndexDefinition] = field(default_factory=list)

    def index(self, name: str, fields: list[str] | tuple[str, ...]) -> TableDefinition:
        """Add an index; returns the table so calls chain like Convex's."""
        if not isinstance(name, str) or not _INDEX_NAME.match(name):
            raise SchemaError(f"index name {name!r} must be an identifier (letters, digits, _)")
        if name in (BY_ID, BY_CREATION_TIME) or any(i.name == name for i in self.indexes):
            raise SchemaError(f"index name {name!r} is reserved or already defined")
        if isinstance(fields, str) or not fields:
            raise SchemaError(f"index {name!r}: fields must be a non-empty list of field names")
        if len(fields) > MAX_INDEX_FIELDS:
            raise SchemaError(f"index {name!r}: at most {MAX_INDEX_FIELDS} fields")
        for f in fields:
            if not isinstance(f, str) or not _FIELD_PATH.match(f):
                raise SchemaError(
                    f"index {name!r}: {f!r} is not a field name (system fields _id and "
                    "_creationTime are added to every index automatically)"
                )
        if len(set(fields)) != len(fields):
            raise SchemaError(f"index {name!r}: duplicate fields {list(fields)}")
        if len(self.indexes) >= MAX_INDEXES_PER_TABLE:
            raise SchemaError(f"a table can have at most {MAX_INDEXES_PER_TABLE} indexes")
        self.indexes.append(IndexDefinition(name, tuple(fields)))
        return self

    def all_indexes(self) -> list[IndexDefinition]:
        return [*builtin_indexes(), *self.indexes]


@dataclass
class SchemaDefinition:
    """The tables of an app. ``schema_validation=False`` stores documents unchecked."""

    tables: dict[str, TableDefinition]
    schema_validation: bool = True


def define_table(document: Mapping[str, Validator] | Validator | None = None) -> TableDefinition:
    """Declare a table whose documents match ``document`` (a dict of validators)."""
    validator = as_validator(document) if document is not None else None
    return TableDefinition(validator)


def define_schema(
    tables: Mapping[str, TableDefinition], *, schema_validation: bool = True
) -> SchemaDefinition:
    """Declare an app's tables: ``define_schema({"messages": define_table({...})})``."""
    if not isinstance(tables, Mapping):
        raise SchemaError("define_schema takes a dict of table name -> define_table(...)")
    for name, table in tables.items():
        check_table_name(name)
        if not isinstance(table, TableDefinition):
            raise SchemaError(f"table {name!r}: expected define_table(...), got {table!r}")
    return SchemaDefinition(dict(tables), schema_validation)


def check_table_name(name: object, *, system: bool = False) -> str:
    pattern = _SYSTEM_TABLE_NAME if system else _TABLE_NAME
    if not isinstance(name, str) or not pattern.match(name):
        kind = "system table" if system else "table"
        raise SchemaError(
            f"{name!r} is not a valid {kind} name (letters, digits and _, starting with a "
            f"letter{'' if not system else ' after the leading _'}, at most 64 characters)"
        )
    return name
