"""How a fault's window is measured against the clients' successes, and which
failures leave a mutation's outcome unknown (and why each failed)."""

from __future__ import annotations

import asyncio

from syncline.client import ClientError, FunctionError
from syncline.verify import FaultWindow, History, OpType, describe_windows
from syncline.verify._faults import longest_gap_ns
from syncline.verify._workloads import Timeline, _call, outcome_unknown

S = 1_000_000_000


def test_the_longest_gap_between_successes_within_bounds() -> None:
    assert longest_gap_ns([2 * S, 3 * S, 7 * S], 0, 10 * S) == 4 * S
    assert longest_gap_ns([], 5, 9) == 4
    assert longest_gap_ns([1, 50], 10, 20) == 10  # marks outside do not count


def test_a_fault_window_spans_its_outage() -> None:
    window = FaultWindow(
        "kill-txn", "txn0", started_ns=10 * S, healed_ns=13 * S, recovered_ns=14 * S
    )
    # Successes until 9.5 s, none during the fault, the next at 15 s.
    marks = [8 * S, 9 * S + S // 2, 15 * S, 16 * S]
    [described] = describe_windows([window], marks, 20 * S)
    assert described == {
        "fault": "kill-txn",
        "target": "txn0",
        "held_seconds": 3.0,
        "recovery_seconds": 1.0,
        "longest_unavailability_seconds": 5.5,
    }


def test_a_fault_clients_did_not_notice() -> None:
    window = FaultWindow(
        "kill-sync", "sync1", started_ns=10 * S, healed_ns=12 * S, recovered_ns=12 * S
    )
    marks = [i * S // 10 for i in range(90, 140)]  # a success every 100 ms throughout
    [described] = describe_windows([window], marks, 20 * S)
    assert described["longest_unavailability_seconds"] == 0.1


def test_a_failure_that_does_not_say_whether_it_committed_is_unknown() -> None:
    unknown = [
        "Unavailable: no txn leader answered within 10 s",
        "Fenced: this committer was deposed; retry on the new leader",
        "Server Error",
    ]
    for message in unknown:
        assert outcome_unknown(FunctionError(message)), message
    refused = [
        "OptimisticConcurrencyControlFailure: a read changed",
        "ValidationFailed: transfer a positive amount",
        'Uncaught ConvexError: "no"',
    ]
    for message in refused:
        assert not outcome_unknown(FunctionError(message)), message
    assert not outcome_unknown(FunctionError("Unavailable: lookalike", data="app data"))


async def test_each_failure_is_recorded_with_why() -> None:
    history, timeline = History(), Timeline()

    async def fails(error: Exception) -> None:
        raise error

    async def hangs() -> None:
        await asyncio.sleep(10)

    calls = [
        fails(FunctionError("Unavailable: no txn leader answered within 10 s")),
        fails(FunctionError("OptimisticConcurrencyControlFailure: a read changed")),
        fails(FunctionError("OptimisticConcurrencyControlFailure: again")),
        fails(ClientError("the client is closed")),
        hangs(),
    ]
    for process, call in enumerate(calls):
        await _call(
            history, timeline, process, "txn", [], call, lambda r: r, answer_within_seconds=0.01
        )
    outcomes = [op.type for op in history.ops if op.type is not OpType.INVOKE]
    assert outcomes == [OpType.INFO, OpType.FAIL, OpType.FAIL, OpType.INFO, OpType.INFO]
    assert timeline.not_ok == {
        "OptimisticConcurrencyControlFailure": 2,
        "Unavailable": 1,
        "ClientError": 1,
        "no answer within 0.01 s": 1,
    }
    assert not timeline.ok_ns
