"""The database as functions see it: transactions, queries, ``ctx.db``."""

from syncline.database._db import DatabaseReader, DatabaseWriter, EnsureTable
from syncline.database._limits import TransactionLimits
from syncline.database._model import (
    UNSET,
    DataModel,
    TableInfo,
    field_value,
    index_key,
)
from syncline.database._query import IndexRange, PaginationJournal, Query
from syncline.database._transaction import Transaction

__all__ = [
    "UNSET",
    "DataModel",
    "DatabaseReader",
    "DatabaseWriter",
    "EnsureTable",
    "IndexRange",
    "PaginationJournal",
    "Query",
    "TableInfo",
    "Transaction",
    "TransactionLimits",
    "field_value",
    "index_key",
]
