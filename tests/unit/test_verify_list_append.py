"""The list-append checker on hand-made histories, each with one known anomaly
(or none), written as a client would have recorded them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from syncline.verify import History, Model, OpType, check_list_append


class Recorder:
    """Builds a history: ``run`` is one transaction invoked and completed at once;
    ``invoke``/``complete`` interleave them."""

    def __init__(self) -> None:
        self.history = History()
        self.clock = 0

    def _now(self) -> int:
        self.clock += 1
        return self.clock

    def invoke(self, process: int, ops: list[list[Any]]) -> None:
        invoked = [[f, k, None if f == "r" else v] for f, k, v in ops]
        self.history.add(process, OpType.INVOKE, "txn", invoked, self._now())

    def complete(self, process: int, ops: list[list[Any]], type_: OpType = OpType.OK) -> None:
        self.history.add(process, type_, "txn", ops, self._now())

    def run(self, process: int, ops: list[list[Any]], type_: OpType = OpType.OK) -> None:
        self.invoke(process, ops)
        self.complete(process, ops, type_)


def kinds(recorder: Recorder, **kwargs: Any) -> list[str]:
    result = check_list_append(recorder.history, **kwargs)
    return sorted(a.kind for a in result.anomalies)


def test_a_serial_history_is_clean() -> None:
    r = Recorder()
    r.run(0, [["append", "x", 1], ["r", "x", [1]]])
    r.run(1, [["r", "x", [1]], ["append", "x", 2], ["append", "y", 1]])
    r.run(0, [["r", "x", [1, 2]], ["r", "y", [1]]])
    assert kinds(r, model=Model.STRICT_SERIALIZABLE, final_reads={"x": [1, 2], "y": [1]}) == []


def test_write_cycle_is_g0() -> None:
    # T1 appends x then y, T2 appends x then y, and the orders disagree.
    r = Recorder()
    r.invoke(0, [["append", "x", 1], ["append", "y", 1]])
    r.invoke(1, [["append", "x", 2], ["append", "y", 2]])
    r.complete(0, [["append", "x", 1], ["append", "y", 1]])
    r.complete(1, [["append", "x", 2], ["append", "y", 2]])
    r.run(2, [["r", "x", [1, 2]], ["r", "y", [2, 1]]])
    assert kinds(r) == ["G0"]


def test_aborted_read_is_g1a() -> None:
    r = Recorder()
    r.run(0, [["append", "x", 1]], OpType.FAIL)
    r.run(1, [["r", "x", [1]]])
    assert "G1a" in kinds(r)


def test_intermediate_read_is_g1b() -> None:
    r = Recorder()
    r.invoke(0, [["append", "x", 1], ["append", "x", 2]])
    r.run(1, [["r", "x", [1]]])
    r.complete(0, [["append", "x", 1], ["append", "x", 2]])
    assert "G1b" in kinds(r)


def test_circular_information_flow_is_g1c() -> None:
    # Each saw the other's write: T1 read T2's y, T2 read T1's x.
    r = Recorder()
    r.invoke(0, [["append", "x", 1], ["r", "y", None]])
    r.invoke(1, [["append", "y", 1], ["r", "x", None]])
    r.complete(0, [["append", "x", 1], ["r", "y", [1]]])
    r.complete(1, [["append", "y", 1], ["r", "x", [1]]])
    assert kinds(r) == ["G1c"]


def test_lost_update_is_g_single() -> None:
    # Both read x empty and appended: one read misses the other's earlier append.
    r = Recorder()
    r.invoke(0, [["r", "x", None], ["append", "x", 1]])
    r.invoke(1, [["r", "x", None], ["append", "x", 2]])
    r.complete(0, [["r", "x", []], ["append", "x", 1]])
    r.complete(1, [["r", "x", []], ["append", "x", 2]])
    r.run(2, [["r", "x", [1, 2]]])
    assert kinds(r) == ["G-single"]


def test_write_skew_is_g2_item() -> None:
    # Each read the other's key empty, then wrote its own.
    r = Recorder()
    r.invoke(0, [["r", "y", None], ["append", "x", 1]])
    r.invoke(1, [["r", "x", None], ["append", "y", 1]])
    r.complete(0, [["r", "y", []], ["append", "x", 1]])
    r.complete(1, [["r", "x", []], ["append", "y", 1]])
    r.run(2, [["r", "x", [1]], ["r", "y", [1]]])
    assert kinds(r) == ["G2-item"]


def test_a_stale_read_breaks_only_strict_serializability() -> None:
    # T1 completes its append before T2 starts, yet T2 reads x without it.
    r = Recorder()
    r.run(0, [["append", "x", 1]])
    r.run(1, [["r", "x", []]])
    r.run(0, [["r", "x", [1]]])
    assert kinds(r, model=Model.SERIALIZABLE) == []
    assert kinds(r, model=Model.STRONG_SESSION_SERIALIZABLE) == []
    assert kinds(r, model=Model.STRICT_SERIALIZABLE) == ["G-single-realtime"]


def test_not_reading_your_own_write_breaks_session_order() -> None:
    r = Recorder()
    r.run(0, [["append", "x", 1]])
    r.run(0, [["r", "x", []]])
    r.run(1, [["r", "x", [1]]])
    assert kinds(r, model=Model.SERIALIZABLE) == []
    assert kinds(r) == ["G-single-process"]


def test_lost_duplicate_garbage_and_disagreeing_reads() -> None:
    r = Recorder()
    r.run(0, [["append", "x", 1]])
    r.run(1, [["append", "x", 2]])
    r.run(2, [["r", "x", [1, 1]]])
    r.run(3, [["r", "x", [2, 9]]])
    found = kinds(r, final_reads={"x": [1]})
    assert {"lost-write", "duplicate", "garbage-read", "incompatible-order"} <= set(found)


def test_a_transaction_must_see_its_own_appends() -> None:
    r = Recorder()
    r.run(0, [["append", "x", 1], ["r", "x", []]])
    assert "internal" in kinds(r)


def test_an_unknown_outcome_whose_write_was_seen_takes_part() -> None:
    # T0's outcome is unknown (info), but T1 saw its append to y: it committed, so
    # T1 missing its append to x is a read skew (a cycle through T0).
    r = Recorder()
    r.invoke(0, [["append", "x", 1], ["append", "y", 1]])
    r.run(1, [["r", "x", []], ["r", "y", [1]]])
    r.complete(0, [["append", "x", 1], ["append", "y", 1]], OpType.INFO)
    assert kinds(r, final_reads={"x": [1], "y": [1]}) == ["G-single"]
    # Unknown outcomes are never lost writes: only acknowledged ones can be.
    r = Recorder()
    r.run(0, [["append", "x", 1]], OpType.INFO)
    assert kinds(r, final_reads={"x": []}) == []


def test_history_round_trips_through_elle_json(tmp_path: Path) -> None:
    r = Recorder()
    r.run(0, [["append", "x", 1], ["r", "x", [1]]])
    r.invoke(1, [["append", "x", 2]])
    path = tmp_path / "history.json"
    r.history.write_elle(path)
    lines = path.read_text().splitlines()
    assert '"type":"invoke"' in lines[0] and '"value":[["append","x",1],["r","x",null]]' in lines[0]
    again = History.read_elle(path)
    assert again.ops == r.history.ops
    # The one still in flight counts as unknown.
    assert [t.type for t in again.txns()] == [OpType.OK, OpType.INFO]


def test_a_history_with_two_invocations_in_flight_is_refused() -> None:
    r = Recorder()
    r.invoke(0, [["append", "x", 1]])
    r.invoke(0, [["append", "x", 2]])
    with pytest.raises(ValueError, match="invoked twice"):
        check_list_append(r.history)
