"""The scheduled-effect checker: scheduled mutations take effect exactly once,
actions at most once, and nothing takes effect that was never scheduled."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from syncline.verify._history import OpType
from syncline.verify._list_append import Anomaly


@dataclass
class LedgerResult:
    anomalies: list[Anomaly]
    scheduled: dict[str, int]
    """Jobs by kind (mutation, action) that were surely scheduled."""
    states: dict[str, int]
    """Those jobs by final state."""
    effects: int


def check_ledger(
    jobs: Mapping[str, tuple[str, str | None, OpType]],
    states: Mapping[str, str | None],
    effects: Sequence[Any],
) -> LedgerResult:
    """``jobs``: token -> (kind, job id, how scheduling it ended); ``states``: job id
    -> final state; ``effects``: every token whose effect took place, as many times
    as it did."""
    anomalies: list[Anomaly] = []
    counts = Counter(effects)
    for token in counts.keys() - jobs.keys():
        anomalies.append(Anomaly("garbage-effect", f"effect {token!r} was never scheduled"))
    scheduled: Counter[str] = Counter()
    by_state: Counter[str] = Counter()
    for token, (kind, job_id, outcome) in sorted(jobs.items()):
        count = counts.get(token, 0)
        job = {"token": token, "kind": kind, "job": job_id, "scheduling": outcome.value}
        if outcome is OpType.FAIL:
            if count:
                anomalies.append(
                    Anomaly(
                        "effect-of-unscheduled",
                        f"{token}: its scheduling failed, yet it took effect {count} time(s)",
                        (job,),
                    )
                )
            continue
        if count > 1:
            anomalies.append(
                Anomaly(
                    "duplicate-effect",
                    f"{token}: a scheduled {kind} took effect {count} times",
                    (job,),
                )
            )
        if outcome is not OpType.OK or job_id is None:
            continue  # unknown whether it was scheduled: at most once is all there is
        scheduled[kind] += 1
        state = states.get(job_id)
        by_state[str(state)] += 1
        job["state"] = state
        if state in ("pending", "inProgress"):
            anomalies.append(
                Anomaly("job-not-finished", f"{token}: its job is still {state}", (job,))
            )
        elif state == "success" and count != 1:
            anomalies.append(
                Anomaly(
                    "lost-effect",
                    f"{token}: its {kind} succeeded but took effect {count} times",
                    (job,),
                )
            )
        elif kind == "mutation" and state == "failed" and count:
            anomalies.append(
                Anomaly(
                    "effect-of-failed-mutation",
                    f"{token}: its mutation failed, yet took effect {count} time(s)",
                    (job,),
                )
            )
    return LedgerResult(anomalies, dict(scheduled), dict(by_state), len(effects))
