"""Schemas: tables, validators of documents, indexes."""

from syncline.schema._definition import (
    BY_CREATION_TIME,
    BY_ID,
    SYSTEM_FIELDS,
    IndexDefinition,
    SchemaDefinition,
    TableDefinition,
    builtin_indexes,
    check_table_name,
    define_schema,
    define_table,
)

__all__ = [
    "BY_CREATION_TIME",
    "BY_ID",
    "SYSTEM_FIELDS",
    "IndexDefinition",
    "SchemaDefinition",
    "TableDefinition",
    "builtin_indexes",
    "check_table_name",
    "define_schema",
    "define_table",
]
