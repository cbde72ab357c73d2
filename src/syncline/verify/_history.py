"""A history of operations, as a checker reads it: invocations and their outcomes.

Each client process records an ``invoke`` before it sends a transaction and one
completion after: ``ok`` (it committed, with what it read), ``fail`` (it surely
did not take effect) or ``info`` (unknown: it may or may not have). A
transaction is a list of micro-operations, ``["append", key, value]`` and
``["r", key, list-or-None]``, the shape Jepsen's Elle and elle-cli read.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MicroOp = list[Any]
"""``["append", key, value]`` or ``["r", key, values or None]``."""


class OpType(enum.Enum):
    INVOKE = "invoke"
    OK = "ok"
    FAIL = "fail"
    INFO = "info"


@dataclass(frozen=True)
class Op:
    """One line of a history."""

    index: int
    process: int
    type: OpType
    f: str
    value: Any
    time_ns: int
    """Since the history began."""

    def to_elle(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "time": self.time_ns,
            "type": self.type.value,
            "process": self.process,
            "f": self.f,
            "value": self.value,
        }


@dataclass(eq=False)
class Txn:
    """An invocation paired with its completion."""

    id: int
    """The index of its invocation."""
    process: int
    type: OpType
    """How it completed (INFO if it never did)."""
    ops: list[MicroOp]
    """As completed when ok (reads filled in), else as invoked."""
    invoked_ns: int
    completed_ns: int | None

    def appends(self) -> Iterable[tuple[Any, Any]]:
        return ((op[1], op[2]) for op in self.ops if op[0] == "append")

    def reads(self) -> Iterable[tuple[Any, list[Any] | None]]:
        return ((op[1], op[2]) for op in self.ops if op[0] == "r")

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "process": self.process, "type": self.type.value, "ops": self.ops}


@dataclass
class History:
    """Operations in the order they happened, with indexes assigned as recorded."""

    ops: list[Op] = field(default_factory=list)

    def add(self, process: int, type_: OpType, f: str, value: Any, time_ns: int) -> Op:
        op = Op(len(self.ops), process, type_, f, value, time_ns)
        self.ops.append(op)
        return op

    def txns(self, f: str | None = None) -> list[Txn]:
        """Every invocation paired with its completion (a process has one in flight)."""
        open_by_process: dict[int, Op] = {}
        txns: list[Txn] = []
        for op in self.ops:
            if f is not None and op.f != f:
                continue
            if op.type is OpType.INVOKE:
                if op.process in open_by_process:
                    raise ValueError(f"process {op.process} invoked twice without completing")
                open_by_process[op.process] = op
                continue
            invoke = open_by_process.pop(op.process, None)
            if invoke is None:
                raise ValueError(f"op {op.index}: process {op.process} completed nothing")
            ops = op.value if op.type is OpType.OK else invoke.value
            txns.append(Txn(invoke.index, op.process, op.type, ops, invoke.time_ns, op.time_ns))
        for invoke in open_by_process.values():
            txns.append(
                Txn(invoke.index, invoke.process, OpType.INFO, invoke.value, invoke.time_ns, None)
            )
        return sorted(txns, key=lambda t: t.id)

    def write_elle(self, path: Path) -> None:
        """One JSON object per line, as elle-cli reads a history (``--format json``)."""
        with path.open("w") as out:
            for op in self.ops:
                out.write(json.dumps(op.to_elle(), separators=(",", ":")) + "\n")

    @staticmethod
    def read_elle(path: Path) -> History:
        history = History()
        for line in path.read_text().splitlines():
            if line.strip():
                obj = json.loads(line)
                history.ops.append(
                    Op(
                        int(obj["index"]),
                        int(obj["process"]),
                        OpType(obj["type"]),
                        str(obj["f"]),
                        obj["value"],
                        int(obj.get("time", 0)),
                    )
                )
        return history


def count_by_type(ops: Sequence[Op]) -> dict[str, int]:
    counts = {t.value: 0 for t in OpType if t is not OpType.INVOKE}
    for op in ops:
        if op.type is not OpType.INVOKE:
            counts[op.type.value] += 1
    return counts
