"""The fault matrix CI runs: ``syncline verify --faults`` against a whole local
cluster (``syncline cluster up``), every fault in turn, and no anomaly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import BANK
from tests.fixtures.local_cluster import syncline

pytestmark = pytest.mark.cluster

FAULTS = [
    "skew-scheduler",  # first, so that a skewed scheduler runs the scheduled workload's jobs
    "expire-scheduler",
    "drop-clients",
    "kill-txn",
    "kill-sync",
    "stop-sync",
    "restart-postgres",
    "kill-scheduler",
    "kill-gateway",
    "restart-redis",
    "stop-txn",
]


async def verify_under_faults(
    data_dir: Path,
    faults: list[str],
    *,
    workloads: str,
    seconds: int,
    fault_seconds: int,
    seed: int,
) -> dict[str, Any]:
    """``syncline verify --faults`` on the cluster in ``data_dir``; asserts the report
    is valid, every fault was injected, and every workload kept serving."""
    code, out, err = await syncline(
        "verify",
        "--cluster",
        str(data_dir),
        "--faults",
        ",".join(faults),
        "--fault-seconds",
        str(fault_seconds),
        "--workload",
        workloads,
        "--seconds",
        str(seconds),
        "--seed",
        str(seed),
        "--json",
        timeout=seconds * 20,
    )
    report: dict[str, Any] = json.loads(out)
    assert code == 0 and report["valid"], err + out
    injected = [f["fault"] for w in report["workloads"] for f in w.get("faults", [])]
    assert set(injected) == set(faults), (injected, err)
    for workload in report["workloads"]:
        assert workload["outcomes"]["ok"] > 20, workload
        assert not workload["anomalies"]
    print(err)  # the seed and each fault, shown if it fails
    return report


@pytest.mark.timeout(720)
async def test_every_fault_in_turn_leaves_no_anomaly(data_dir: Path) -> None:
    code, _, err = await syncline("cluster", "up", "--app", str(BANK), "--data", str(data_dir))
    assert code == 0, err
    await verify_under_faults(
        data_dir,
        FAULTS,
        workloads="scheduled,list-append,bank",
        seconds=34,
        fault_seconds=2,
        seed=42,
    )

    # Bad fault names are refused with the list of those this cluster supports.
    code, _, err = await syncline("verify", "--cluster", str(data_dir), "--faults", "kill-db")
    assert code == 2 and "unknown fault kill-db" in err and "kill-txn" in err


@pytest.mark.timeout(600)
async def test_faults_between_regions_leave_no_anomaly_and_subscribers_converge(
    data_dir: Path,
) -> None:
    """A partition between regions and a paused replica, with clients in both
    regions at once: subscribers in the cut-off region catch up after the heal;
    and the txn leader cut off ZooKeeper, then one on a skewed clock."""
    up = ["cluster", "up", "--app", str(BANK), "--data", str(data_dir), "--regions", "local,eu"]
    code, _, err = await syncline(*up, timeout=240)
    assert code == 0, err
    report = await verify_under_faults(
        data_dir,
        ["pause-replica-eu", "partition-eu", "expire-txn", "skew-txn"],
        workloads="subscriptions,list-append",
        seconds=24,
        fault_seconds=3,
        seed=43,
    )
    assert len(report["urls"]) == 2, report["urls"]
    subscriptions = report["workloads"][0]
    assert subscriptions["convergence_seconds"] is not None, subscriptions
