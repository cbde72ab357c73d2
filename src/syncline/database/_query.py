"""``ctx.db.query(table)``: index ranges, order, filters and pagination.

A query reads one index range. ``with_index(name, lambda q: q.eq(..).gt(..))``
turns equality on a prefix of the index's fields plus an optional range on
the next field into a key interval; without it the table is read in creation
order (``by_creation_time``).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from syncline._errors import InvalidValueError, SchemaError, ValidationError
from syncline.database._model import TableInfo
from syncline.database._transaction import Transaction
from syncline.schema import BY_CREATION_TIME
from syncline.storage import Document, IndexMeta
from syncline.values import check_value, encode_key, key_successor, prefix_end

MAX_PAGE_ITEMS = 8_192
MAX_CURSOR_BYTES = 64 * 1024
_END_CURSOR = "_end"


class IndexRange:
    """The ``q`` of ``with_index(name, lambda q: ...)``."""

    def __init__(self, index: IndexMeta) -> None:
        self._index = index
        self._fields = index.key_fields
        self._prefix = b""
        self._eq_count = 0
        self._range_field: str | None = None
        self._lower: tuple[bytes, bool] | None = None
        self._upper: tuple[bytes, bool] | None = None

    def _next_field(self, field: str, op: str) -> None:
        if self._range_field is not None:
            if op == "eq" or field != self._range_field:
                raise SchemaError(
                    f"index {self._index.name!r}: {op}({field!r}) after a range on "
                    f"{self._range_field!r}; ranges come last and apply to one field"
                )
            return
        if self._eq_count >= len(self._fields) or self._fields[self._eq_count] != field:
            expected = (
                self._fields[self._eq_count] if self._eq_count < len(self._fields) else "nothing"
            )
            raise SchemaError(
                f"index {self._index.name!r} on {list(self._fields)}: {op}({field!r}) must name "
                f"the next index field, {expected!r}"
            )

    @staticmethod
    def _encode(field: str, value: object) -> bytes:
        check_value(value, path=f"with_index.{field}")
        return encode_key(value)

    def eq(self, field: str, value: object) -> IndexRange:
        self._next_field(field, "eq")
        self._prefix += self._encode(field, value)
        self._eq_count += 1
        return self

    def _set_lower(self, field: str, value: object, inclusive: bool, op: str) -> IndexRange:
        self._next_field(field, op)
        if self._lower is not None or self._upper is not None:
            raise SchemaError(f"{op}({field!r}): give the lower bound once, before the upper")
        self._range_field = field
        self._lower = (self._encode(field, value), inclusive)
        return self

    def _set_upper(self, field: str, value: object, inclusive: bool, op: str) -> IndexRange:
        self._next_field(field, op)
        if self._upper is not None:
            raise SchemaError(f"{op}({field!r}): the upper bound is already set")
        self._range_field = field
        self._upper = (self._encode(field, value), inclusive)
        return self

    def gt(self, field: str, value: object) -> IndexRange:
        return self._set_lower(field, value, False, "gt")

    def gte(self, field: str, value: object) -> IndexRange:
        return self._set_lower(field, value, True, "gte")

    def lt(self, field: str, value: object) -> IndexRange:
        return self._set_upper(field, value, False, "lt")

    def lte(self, field: str, value: object) -> IndexRange:
        return self._set_upper(field, value, True, "lte")

    def bounds(self) -> tuple[bytes, bytes | None]:
        start = self._prefix
        end: bytes | None = prefix_end(self._prefix) if self._prefix else None
        if self._lower is not None:
            key, inclusive = self._lower
            start = self._prefix + key if inclusive else prefix_end(self._prefix + key)
        if self._upper is not None:
            key, inclusive = self._upper
            end = prefix_end(self._prefix + key) if inclusive else self._prefix + key
        return start, end


class Query:
    """A lazily evaluated read of one table; terminal methods are async."""

    def __init__(
        self, tx: Transaction, table: TableInfo, paginate_journal: PaginationJournal
    ) -> None:
        self._tx = tx
        self._table = table
        self._journal = paginate_journal
        self._index: IndexMeta = table.indexes[BY_CREATION_TIME]
        self._start: bytes = b""
        self._end: bytes | None = None
        self._index_chosen = False
        self._descending = False
        self._filters: list[Callable[[Document], Any]] = []

    def with_index(
        self, name: str, range_fn: Callable[[IndexRange], IndexRange] | None = None
    ) -> Query:
        if self._index_chosen:
            raise SchemaError("with_index / full_table_scan can be called once per query")
        index = self._table.indexes.get(name) if isinstance(name, str) else None
        if index is None:
            raise SchemaError(
                f"table {self._table.name!r} has no index {name!r} "
                f"(indexes: {sorted(self._table.indexes)})"
            )
        rng = IndexRange(index)
        if range_fn is not None:
            result = range_fn(rng)
            if result is not rng:
                raise SchemaError("the with_index range function must return q (chain q.eq(...))")
        self._index = index
        self._start, self._end = rng.bounds()
        self._index_chosen = True
        return self

    def full_table_scan(self) -> Query:
        return self.with_index(BY_CREATION_TIME)

    def order(self, order: str) -> Query:
        if order not in ("asc", "desc"):
            raise ValidationError(f"order must be 'asc' or 'desc', got {order!r}")
        self._descending = order == "desc"
        return self

    def filter(self, predicate: Callable[[Document], Any]) -> Query:
        if not callable(predicate):
            raise ValidationError("filter takes a function doc -> bool")
        self._filters.append(predicate)
        return self

    async def _rows(self, start: bytes, end: bytes | None) -> AsyncIterator[tuple[bytes, Document]]:
        # The transaction counts the documents read against its limit.
        async for key, doc in self._tx.scan(self._index, start, end, descending=self._descending):
            if all(f(doc) for f in self._filters):
                yield key, doc

    async def __aiter__(self) -> AsyncIterator[Document]:
        async for _, doc in self._rows(self._start, self._end):
            yield doc

    async def collect(self) -> list[Document]:
        return [doc async for _, doc in self._rows(self._start, self._end)]

    async def take(self, n: int) -> list[Document]:
        if isinstance(n, bool) or not isinstance(n, int | float) or n < 0 or int(n) != n:
            raise ValidationError(f"take(n): n must be a non-negative integer, got {n!r}")
        out: list[Document] = []
        if n == 0:
            return out
        async for _, doc in self._rows(self._start, self._end):
            out.append(doc)
            if len(out) >= n:
                break
        return out

    async def first(self) -> Document | None:
        found = await self.take(1)
        return found[0] if found else None

    async def unique(self) -> Document | None:
        found = await self.take(2)
        if len(found) > 1:
            raise ValidationError(
                f"unique(): more than one document in {self._table.name!r} matches "
                f"({found[0]['_id']}, {found[1]['_id']})"
            )
        return found[0] if found else None

    def _position(self, cursor: str) -> bytes:
        """A cursor's key, which must lie in this query's range (cursors are opaque)."""
        key = _decode_cursor(cursor)
        in_range = self._start <= key and (self._end is None or key < self._end)
        if not in_range or len(key) > MAX_CURSOR_BYTES:
            raise ValidationError("paginate: the cursor does not belong to this query")
        return key

    async def paginate(self, options: object) -> dict[str, Any]:
        num_items, cursor = _pagination_options(options)
        start, end = self._start, self._end
        if cursor == _END_CURSOR:
            return {"page": [], "isDone": True, "continueCursor": _END_CURSOR}
        if cursor is not None:
            position = self._position(cursor)
            if self._descending:
                end = position if end is None else min(end, position)
            else:
                start = max(start, key_successor(position))
        fixed_end = self._journal.next_end()
        if fixed_end is not None and fixed_end != _END_CURSOR:
            position = self._position(fixed_end)
            if self._descending:
                start = max(start, position)
            else:
                end = key_successor(position) if end is None else min(end, key_successor(position))
        page: list[Document] = []
        last_key: bytes | None = None
        done = True
        async for key, doc in self._rows(start, end):
            page.append(doc)
            last_key = key
            if fixed_end is None and len(page) >= num_items:
                done = False
                break
        if fixed_end is not None and fixed_end != _END_CURSOR:
            # The page keeps its recorded end so pages stay gapless; it is done only
            # if nothing lies beyond that end.
            continue_cursor = fixed_end
            done = False
        elif done:
            continue_cursor = _END_CURSOR
        else:
            assert last_key is not None
            continue_cursor = _encode_cursor(last_key)
        self._journal.record_end(continue_cursor)
        return {"page": page, "isDone": done, "continueCursor": continue_cursor}


class PaginationJournal:
    """End cursors of a query's paginate() calls, so re-runs keep page bounds.

    Convex clients hold it as the query's opaque ``journal`` string.
    """

    def __init__(self, serialized: str | None = None) -> None:
        self._fixed: list[str] = []
        if serialized:
            try:
                data = json.loads(serialized)
                ends = data["ends"]
                if not isinstance(ends, list) or not all(isinstance(e, str) for e in ends):
                    raise ValueError
                self._fixed = ends
            except (ValueError, KeyError, TypeError) as exc:
                raise InvalidValueError("malformed query journal") from exc
        self._recorded: list[str] = []

    def next_end(self) -> str | None:
        i = len(self._recorded)
        return self._fixed[i] if i < len(self._fixed) else None

    def record_end(self, cursor: str) -> None:
        self._recorded.append(cursor)

    def serialize(self) -> str | None:
        return json.dumps({"ends": self._recorded}) if self._recorded else None


def _pagination_options(options: object) -> tuple[int, str | None]:
    if not isinstance(options, dict):
        raise ValidationError('paginate expects {"numItems": n, "cursor": cursor or None}')
    num = options.get("numItems")
    if isinstance(num, bool) or not isinstance(num, int | float) or num != num or num < 1:
        raise ValidationError(f"paginate: numItems must be a positive number, got {num!r}")
    if num > MAX_PAGE_ITEMS:
        raise ValidationError(f"paginate: numItems must be at most {MAX_PAGE_ITEMS}")
    cursor = options.get("cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise ValidationError("paginate: cursor must be a string or None")
    return int(num), cursor


def _encode_cursor(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode("ascii")


def _decode_cursor(cursor: str) -> bytes:
    try:
        return base64.b64decode(cursor.encode("ascii"), altchars=b"-_", validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise ValidationError(f"paginate: invalid cursor {cursor[:40]!r}") from exc
