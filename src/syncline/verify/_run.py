"""One ``syncline verify`` run: the workloads, their checks, and the report."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syncline.verify._bank import check_bank
from syncline.verify._faults import FaultInjector, describe_windows
from syncline.verify._history import History, count_by_type
from syncline.verify._ledger import check_ledger
from syncline.verify._list_append import Anomaly, Model, check_list_append
from syncline.verify._workloads import (
    Progress,
    Timeline,
    WorkloadConfig,
    run_bank,
    run_ledger,
    run_list_append,
    run_subscriptions,
)

WORKLOADS = ("list-append", "bank", "subscriptions", "scheduled")


@dataclass
class WorkloadReport:
    name: str
    operations: int
    outcomes: dict[str, int]
    """ok, fail and info counts."""
    anomalies: list[Anomaly]
    longest_unavailability_seconds: float
    details: dict[str, Any] = field(default_factory=dict)
    timeline: Timeline = field(default_factory=Timeline, repr=False)
    history: History = field(default_factory=History, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "workload": self.name,
            "operations": self.operations,
            "outcomes": self.outcomes,
            "not_ok": dict(self.timeline.not_ok.most_common()),
            "anomalies": [a.to_json() for a in self.anomalies],
            "longest_unavailability_seconds": round(self.longest_unavailability_seconds, 3),
            **self.details,
        }


@dataclass
class VerifyReport:
    run: str
    seed: int
    urls: tuple[str, ...]
    model: Model
    workloads: list[WorkloadReport]

    @property
    def valid(self) -> bool:
        return not any(w.anomalies for w in self.workloads)

    def to_json(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "run": self.run,
            "seed": self.seed,
            "urls": list(self.urls),
            "model": self.model.value,
            "workloads": [w.to_json() for w in self.workloads],
        }

    def text(self) -> str:
        lines = [
            f"syncline verify: run {self.run}, seed {self.seed}, model {self.model.value}",
            f"against {', '.join(self.urls)}",
            "",
            f"{'workload':<12} {'ops':>7} {'ok':>7} {'fail':>6} {'info':>6} "
            f"{'anomalies':>9} {'longest gap':>12}",
        ]
        for w in self.workloads:
            lines.append(
                f"{w.name:<12} {w.operations:>7,} {w.outcomes['ok']:>7,} {w.outcomes['fail']:>6,} "
                f"{w.outcomes['info']:>6,} {len(w.anomalies):>9,} "
                f"{w.longest_unavailability_seconds:>10.2f} s"
            )
        for w in self.workloads:
            if w.timeline.not_ok:
                reasons = ", ".join(f"{why} ({n:,})" for why, n in w.timeline.not_ok.most_common())
                lines.append(f"  {w.name}: failed or unanswered: {reasons}")
        for w in self.workloads:
            for fault in w.details.get("faults", []):
                lines.append(
                    f"  {w.name}: {fault['fault']} on {fault['target']}: held "
                    f"{fault['held_seconds']:g} s, serving {fault['recovery_seconds']:g} s after "
                    f"the heal, clients waited at most {fault['longest_unavailability_seconds']:g} s"
                )
        for w in self.workloads:
            for anomaly in w.anomalies[:20]:
                lines.append("")
                lines.append(f"{w.name}: {anomaly.kind}: {anomaly.explanation}")
                for txn in anomaly.txns[:6]:
                    lines.append(f"  {txn}")
            if len(w.anomalies) > 20:
                lines.append(f"{w.name}: {len(w.anomalies) - 20} more anomalies (see --json)")
            if "history_file" in w.details:
                lines.append(f"{w.name}: its history is kept in {w.details['history_file']}")
        lines.append("")
        lines.append(
            "no anomalies found" if self.valid else "ANOMALIES FOUND: the history is not valid"
        )
        return "\n".join(lines)


async def verify(
    config: WorkloadConfig,
    *,
    workloads: tuple[str, ...] = WORKLOADS,
    model: Model = Model.STRONG_SESSION_SERIALIZABLE,
    history_path: Path | None = None,
    faults: FaultInjector | None = None,
    progress: Progress = lambda message: None,
    failed_history_dir: Path | None = None,
) -> VerifyReport:
    """Run each workload in turn against ``config.urls`` (with ``faults`` injected
    while its clients run) and check what it recorded.

    The history of a workload that shows an anomaly is kept, as JSON lines, in
    ``failed_history_dir`` (default: the system's temporary directory) unless it
    already went to ``history_path``; the report names the file.
    """
    kept_in = failed_history_dir or Path(tempfile.gettempdir())
    run = uuid.uuid4().hex[:12]
    reports: list[WorkloadReport] = []
    for name in workloads:
        if name not in WORKLOADS:
            raise ValueError(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}")
        progress(f"{name}: {config.clients} clients for {config.seconds:g} s (run {run})")
        stop = asyncio.Event()
        timeline = Timeline()
        nemesis = None
        if faults is not None:
            nemesis = asyncio.create_task(faults.run(stop, timeline), name=f"verify-{name}-faults")
            asyncio.get_running_loop().call_later(config.seconds, stop.set)
        try:
            report = await _one_workload(name, config, run, model, history_path, progress, timeline)
        finally:
            stop.set()
            windows = await nemesis if nemesis is not None else []
        if nemesis is not None:
            ended = timeline.started_ns + (timeline.ended_ns or timeline.now())
            report.details["faults"] = describe_windows(windows, timeline.absolute_marks(), ended)
        if report.anomalies:
            written = history_path if name == "list-append" else None
            report.details["history_file"] = str(written or _keep(report, run, kept_in))
        reports.append(report)
    return VerifyReport(run, config.seed, config.urls, model, reports)


async def _one_workload(
    name: str,
    config: WorkloadConfig,
    run: str,
    model: Model,
    history_path: Path | None,
    progress: Progress,
    timeline: Timeline,
) -> WorkloadReport:
    details: dict[str, Any]
    if name == "list-append":
        history, final, timeline = await run_list_append(config, run, progress, timeline)
        if history_path is not None:
            history.write_elle(history_path)
        result = check_list_append(history, model=model, final_reads=final)
        details = {"keys": result.keys, "reads_checked": result.reads_checked}
        anomalies = result.anomalies
    elif name == "bank":
        history, balances, total, timeline = await run_bank(config, run, progress, timeline)
        bank = check_bank(history, total=total, final_balances=balances)
        details = {"reads_checked": bank.reads_checked, "transfers_ok": bank.transfers_ok}
        anomalies = bank.anomalies
    elif name == "subscriptions":
        watched = await run_subscriptions(config, run, progress, timeline)
        history, timeline = watched.history, watched.timeline
        appends = check_list_append(history, model=model, final_reads=watched.final)
        anomalies = [*watched.anomalies, *appends.anomalies]
        details = {
            "subscribers": watched.subscribers,
            "updates": watched.updates,
            "convergence_seconds": None
            if watched.convergence_seconds is None
            else round(watched.convergence_seconds, 3),
        }
    else:
        ledger = await run_ledger(config, run, progress, timeline)
        history, timeline = ledger.history, ledger.timeline
        checked = check_ledger(ledger.jobs, ledger.states, ledger.effects)
        anomalies = checked.anomalies
        details = {
            "scheduled": checked.scheduled,
            "final_states": checked.states,
            "effects": checked.effects,
        }
    completions = count_by_type(history.ops)
    return WorkloadReport(
        name,
        sum(completions.values()),
        completions,
        anomalies,
        timeline.longest_gap_seconds(),
        details,
        timeline,
        history,
    )


def _keep(report: WorkloadReport, run: str, directory: Path) -> Path:
    """Write a failing workload's history where the operator can find it."""
    path = directory / f"syncline-verify-{run}-{report.name}.jsonl"
    report.history.write_elle(path)
    return path
