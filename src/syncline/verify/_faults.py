"""Faults during a workload: what injects them, and what the report says of each.

A :class:`FaultInjector` (the local cluster's nemesis, ``syncline.cluster``) runs
beside a workload and returns the windows it opened; each window is measured
against the workload's timeline: the longest time clients went without a single
successful operation while it lasted.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class FaultWindow:
    """One fault, from injection to the moment the cluster served again."""

    fault: str
    target: str
    started_ns: int
    """``time.monotonic_ns()`` when it was injected."""
    healed_ns: int
    """When it was healed."""
    recovered_ns: int
    """When the cluster served again after the heal."""


class ClientSuccesses(Protocol):
    def last_ok_ns(self) -> int | None:
        """The clients' latest success on ``time.monotonic_ns()``'s clock, if any."""
        ...


class FaultInjector(Protocol):
    async def run(self, stop: asyncio.Event, successes: ClientSuccesses) -> list[FaultWindow]:
        """Inject faults until ``stop`` is set; heal every one before returning.
        ``successes`` tells when clients were served, so that one fault's outage
        is over before the next begins."""
        ...


def longest_gap_ns(marks: Sequence[int], start_ns: int, end_ns: int) -> int:
    """The longest stretch between ``start_ns`` and ``end_ns`` with no mark in it."""
    inside = sorted(m for m in marks if start_ns <= m <= end_ns)
    bounds = [start_ns, *inside, end_ns]
    return max((b - a for a, b in itertools.pairwise(bounds)), default=0)


def describe_windows(
    windows: Sequence[FaultWindow], ok_marks_ns: Sequence[int], ended_ns: int
) -> list[dict[str, Any]]:
    """Each fault with the longest unavailability clients saw while it lasted (from
    the last success before it to the first after its recovery began)."""
    described = []
    marks = sorted(ok_marks_ns)
    for window in windows:
        before = [m for m in marks if m <= window.started_ns]
        after = [m for m in marks if m >= window.started_ns]
        start = before[-1] if before else window.started_ns
        # The first success after the fault ended its outage (bounded by the run).
        end = next((m for m in after if m >= window.healed_ns), ended_ns)
        gap = longest_gap_ns(marks, start, max(end, window.started_ns))
        described.append(
            {
                "fault": window.fault,
                "target": window.target,
                "held_seconds": round((window.healed_ns - window.started_ns) / 1e9, 3),
                "recovery_seconds": round((window.recovered_ns - window.healed_ns) / 1e9, 3),
                "longest_unavailability_seconds": round(gap / 1e9, 3),
            }
        )
    return described
