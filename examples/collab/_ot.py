"""Operational transformation (OT) of single-range text edits. Pure: no Syncline imports.

An edit is an :class:`Insert` (put ``text`` at ``pos``) or a :class:`Delete` (remove
``length`` characters starting at ``pos``). Positions are Python ``str`` indices, that is
code points.

``transform(op, against, side)`` rewrites ``op`` so that it applies to the text *after*
``against``, when both edits were made on the same text. The rules satisfy TP1, so two
sites that apply the same pair of concurrent edits in opposite orders end with one text::

    apply(apply(t, a), transform(b, a, side)) == apply(apply(t, b), transform(a, b, side.other))

How ties are broken (each rule is the same from both sides, which is what TP1 needs):

* Two inserts at one position: ``side`` says whether ``op`` lands left or right of
  ``against``'s text. The server rebases an incoming edit with ``Side.RIGHT``: the edit
  already in the history keeps its place and the newcomer goes after it; a client that
  transforms the server's edits against its own pending edit passes ``Side.LEFT``.
* An insert strictly inside a range deleted concurrently is dropped (it becomes an empty
  insert) and the delete grows to cover the inserted text: deletion wins on both sides.
  An insert at either end of the range survives.
* Overlapping deletes remove the union of their ranges, each character once.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


class InvalidOpError(ValueError):
    """An edit is malformed, or does not fit the text it is applied to."""


class Side(enum.Enum):
    """Where an insert lands relative to a concurrent insert at the same position."""

    LEFT = "left"
    RIGHT = "right"

    @property
    def other(self) -> Side:
        return Side.RIGHT if self is Side.LEFT else Side.LEFT


@dataclass(frozen=True, slots=True)
class Insert:
    """Insert ``text`` before the character at ``pos`` (``pos == len(text)`` appends)."""

    pos: int
    text: str

    def __post_init__(self) -> None:
        _check_index("pos", self.pos)
        if not isinstance(self.text, str):
            raise InvalidOpError(f"insert text must be a string, got {self.text!r}")

    @property
    def is_noop(self) -> bool:
        return not self.text


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete the ``length`` characters ``[pos, pos + length)``."""

    pos: int
    length: int

    def __post_init__(self) -> None:
        _check_index("pos", self.pos)
        _check_index("length", self.length)

    @property
    def end(self) -> int:
        return self.pos + self.length

    @property
    def is_noop(self) -> bool:
        return self.length == 0


Op = Insert | Delete


def apply(text: str, op: Op) -> str:
    """Return ``text`` with ``op`` applied; :class:`InvalidOpError` if it does not fit."""
    if isinstance(op, Insert):
        if op.pos > len(text):
            raise InvalidOpError(f"insert at {op.pos} is past the end of a {len(text)}-char text")
        return text[: op.pos] + op.text + text[op.pos :]
    if op.end > len(text):
        raise InvalidOpError(
            f"delete of [{op.pos}, {op.end}) is past the end of a {len(text)}-char text"
        )
    return text[: op.pos] + text[op.end :]


def transform(op: Op, against: Op, side: Side = Side.RIGHT) -> Op:
    """Rewrite ``op`` to apply after ``against``; both were made on the same text."""
    if isinstance(against, Insert):
        return _past_insert(op, against, side)
    return _past_delete(op, against)


def rebase(op: Op, history: Iterable[Op], side: Side = Side.RIGHT) -> Op:
    """Transform ``op`` past ``history``, edits applied in order to the text ``op`` was made on."""
    for applied in history:
        op = transform(op, applied, side)
    return op


def diff(old: str, new: str) -> list[Op]:
    """Edits turning ``old`` into ``new``: at most one delete, then at most one insert.

    Only the span between the common prefix and the common suffix is touched, so a
    concurrent edit elsewhere in the text transforms past the result unharmed.
    """
    limit = min(len(old), len(new))
    prefix = 0
    while prefix < limit and old[prefix] == new[prefix]:
        prefix += 1
    suffix = 0
    while suffix < limit - prefix and old[-1 - suffix] == new[-1 - suffix]:
        suffix += 1
    ops: list[Op] = []
    if len(old) - suffix > prefix:
        ops.append(Delete(prefix, len(old) - suffix - prefix))
    if len(new) - suffix > prefix:
        ops.append(Insert(prefix, new[prefix : len(new) - suffix]))
    return ops


def parse_op(data: Mapping[str, Any]) -> Op:
    """Read an edit from its JSON form; numbers may be floats, as JS clients send them."""
    kind = data.get("type")
    if kind == "insert":
        return Insert(_index_field(data, "pos"), _text_field(data))
    if kind == "delete":
        return Delete(_index_field(data, "pos"), _index_field(data, "length"))
    raise InvalidOpError(f"edit type must be 'insert' or 'delete', got {kind!r}")


def op_to_dict(op: Op) -> dict[str, Any]:
    """The JSON form of an edit. Numbers are floats: clients read them as JS numbers."""
    if isinstance(op, Insert):
        return {"type": "insert", "pos": float(op.pos), "text": op.text}
    return {"type": "delete", "pos": float(op.pos), "length": float(op.length)}


def _past_insert(op: Op, applied: Insert, side: Side) -> Op:
    shift = len(applied.text)
    if isinstance(op, Insert):
        if op.pos > applied.pos or (op.pos == applied.pos and side is Side.RIGHT):
            return Insert(op.pos + shift, op.text)
        return op
    if applied.pos <= op.pos:
        return Delete(op.pos + shift, op.length)
    if applied.pos < op.end:
        # Deletion wins: the text inserted inside the range goes with it.
        return Delete(op.pos, op.length + shift)
    return op


def _past_delete(op: Op, applied: Delete) -> Op:
    if isinstance(op, Insert):
        if op.pos <= applied.pos:
            return op
        if op.pos >= applied.end:
            return Insert(op.pos - applied.length, op.text)
        # Deletion wins: the other side grows its delete over this text.
        return Insert(applied.pos, "")
    start = _position_past_delete(op.pos, applied)
    end = _position_past_delete(op.end, applied)
    return Delete(start, end - start)


def _position_past_delete(pos: int, applied: Delete) -> int:
    """Where ``pos`` ends up once ``applied`` ran; positions inside the range collapse."""
    return pos - min(max(pos - applied.pos, 0), applied.length)


def _check_index(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidOpError(f"{name} must be a non-negative integer, got {value!r}")


def _index_field(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise InvalidOpError(f"{key} must be a non-negative integer, got {value!r}")


def _text_field(data: Mapping[str, Any]) -> str:
    text = data.get("text")
    if not isinstance(text, str):
        raise InvalidOpError(f"insert text must be a string, got {text!r}")
    return text
