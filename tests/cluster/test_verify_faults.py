"""The fault matrix CI runs: ``syncline verify --faults`` against a whole local
cluster (``syncline cluster up``), every fault in turn, and no anomaly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cluster.conftest import BANK
from tests.fixtures.local_cluster import syncline

pytestmark = pytest.mark.cluster

FAULTS = [
    "kill-txn",
    "kill-sync",
    "stop-sync",
    "restart-postgres",
    "kill-scheduler",
    "kill-gateway",
    "restart-redis",
    "stop-txn",
]


@pytest.mark.timeout(600)
async def test_every_fault_in_turn_leaves_no_anomaly(data_dir: Path) -> None:
    code, _, err = await syncline("cluster", "up", "--app", str(BANK), "--data", str(data_dir))
    assert code == 0, err
    code, out, err = await syncline(
        "verify",
        "--cluster",
        str(data_dir),
        "--faults",
        ",".join(FAULTS),
        "--fault-seconds",
        "2",
        "--workload",
        "list-append,bank,scheduled",
        "--seconds",
        "16",
        "--seed",
        "42",
        "--json",
        timeout=480,
    )
    report = json.loads(out)
    assert code == 0 and report["valid"], err + out
    injected = [f["fault"] for w in report["workloads"] for f in w.get("faults", [])]
    assert set(injected) == set(FAULTS), (injected, err)
    for workload in report["workloads"]:
        assert workload["outcomes"]["ok"] > 50, workload
        assert not workload["anomalies"]
    print(err)  # the seed and each fault, shown if it fails

    # Bad fault names are refused with the list of those this cluster supports.
    code, _, err = await syncline("verify", "--cluster", str(data_dir), "--faults", "kill-db")
    assert code == 2 and "unknown fault kill-db" in err and "kill-txn" in err
