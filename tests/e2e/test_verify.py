"""``syncline verify`` against real servers: a healthy one shows no anomaly, and one
built without OCC validation is caught; the command's report, JSON and exit codes."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from syncline.cluster._nemesis import Nemesis
from syncline.server import EmbeddedConfig, EmbeddedServer
from syncline.txn import CommitterConfig
from syncline.verify import (
    History,
    Model,
    VerifyReport,
    WorkloadConfig,
    check_list_append,
    verify,
)
from tests.fixtures.dev_server import DevServer

pytestmark = pytest.mark.e2e

APP = "from syncline import query\n\n\n@query\nasync def hello(ctx):\n    return 'hi'\n"


async def _embedded(tmp_path: Path, committer: CommitterConfig) -> EmbeddedServer:
    app = tmp_path / "app"
    app.mkdir(exist_ok=True)
    (app / "hello.py").write_text(APP)
    server = EmbeddedServer(
        EmbeddedConfig(app_dir=app, data_dir=tmp_path / "data", port=0, committer=committer)
    )
    await server.start()
    return server


@pytest.fixture
async def healthy(tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    server = await _embedded(tmp_path, CommitterConfig())
    yield server
    await server.close()


@pytest.fixture
async def without_occ(tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    server = await _embedded(tmp_path, CommitterConfig(check_conflicts=False))
    yield server
    await server.close()


@pytest.fixture
async def without_dedupe(tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    server = await _embedded(tmp_path, CommitterConfig(deduplicate_requests=False))
    yield server
    await server.close()


def _config(server: EmbeddedServer, **overrides: object) -> WorkloadConfig:
    settings: dict[str, object] = {"seconds": 3.0, "clients": 5, "seed": 7}
    settings.update(overrides)
    return WorkloadConfig(urls=(server.url,), admin_key=server.admin_key, **settings)  # type: ignore[arg-type]


async def test_a_healthy_server_shows_no_anomaly(healthy: EmbeddedServer, tmp_path: Path) -> None:
    history_path = tmp_path / "history.json"
    report = await verify(
        _config(healthy), model=Model.STRICT_SERIALIZABLE, history_path=history_path
    )
    assert report.valid, report.text()
    by_name = {w.name: w for w in report.workloads}
    appends, bank = by_name["list-append"], by_name["bank"]
    assert appends.outcomes["ok"] > 100 and bank.details["transfers_ok"] > 50
    assert appends.details["reads_checked"] > 50 and bank.details["reads_checked"] > 10
    watched = by_name["subscriptions"]
    assert watched.details["subscribers"] == 2 and watched.details["updates"] > 10
    assert watched.details["convergence_seconds"] is not None
    scheduled = by_name["scheduled"]
    assert sum(scheduled.details["scheduled"].values()) > 50
    assert scheduled.details["effects"] == scheduled.details["final_states"]["success"]
    # The history written for elle-cli says the same when checked again.
    again = check_list_append(History.read_elle(history_path), model=Model.STRICT_SERIALIZABLE)
    assert again.anomalies == [] and again.txns == appends.operations
    first = json.loads(history_path.read_text().splitlines()[0])
    assert set(first) == {"index", "time", "type", "process", "f", "value"}


async def test_a_server_without_occ_validation_is_caught(
    without_occ: EmbeddedServer, tmp_path: Path
) -> None:
    # Few keys, many clients: concurrent read-modify-writes of one list are certain.
    config = _config(without_occ, keys_active=2, clients=8, accounts=3)
    report = await verify(config, failed_history_dir=tmp_path)
    assert not report.valid
    by_name = {w.name: w for w in report.workloads}
    found = {a.kind for a in by_name["list-append"].anomalies}
    # Appends overwrite each other: lost writes, and reads that missed writes before them.
    assert found & {"lost-write", "G-single", "G2-item", "incompatible-order"}, found
    assert {a.kind for a in by_name["bank"].anomalies} == {"bank-total"} or any(
        a.kind in ("bank-total", "negative-balance") for a in by_name["bank"].anomalies
    )
    assert "ANOMALIES FOUND" in report.text()

    # Each failing history is kept, and checking the kept file finds the anomalies again.
    kept = Path(by_name["list-append"].details["history_file"])
    assert kept.parent == tmp_path and f"its history is kept in {kept}" in report.text()
    again = check_list_append(History.read_elle(kept), model=Model.STRONG_SESSION_SERIALIZABLE)
    assert again.anomalies
    assert Path(by_name["bank"].details["history_file"]).exists()


async def _verify_with_dropped_connections(
    server: EmbeddedServer, workloads: tuple[str, ...]
) -> VerifyReport:
    """``workloads`` with every client connection reset again and again (drop-clients,
    which needs no cluster: the clients connect through links of the verifier's)."""
    config = _config(server, seconds=6.0, keys_active=3)
    nemesis = Nemesis(None, ["drop-clients"], duration_seconds=2.0, rest_seconds=0.5, seed=3)
    async with nemesis.client_links(config.urls) as urls:
        return await verify(
            dataclasses.replace(config, urls=urls), workloads=workloads, faults=nemesis
        )


async def test_mutations_cut_off_in_flight_take_effect_once(healthy: EmbeddedServer) -> None:
    report = await _verify_with_dropped_connections(healthy, ("list-append", "scheduled"))
    assert report.valid, report.text()
    for workload in report.workloads:
        faults = [f["fault"] for f in workload.details["faults"]]
        assert len(faults) >= 2 and set(faults) == {"drop-clients"}, faults
        assert workload.outcomes["ok"] > 50, report.text()


async def test_a_server_that_commits_a_resent_mutation_again_is_caught(
    without_dedupe: EmbeddedServer,
) -> None:
    report = await _verify_with_dropped_connections(without_dedupe, ("list-append",))
    [workload] = report.workloads
    assert "duplicate" in {a.kind for a in workload.anomalies}, report.text()


async def _syncline(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "syncline",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_the_command_reports_json_and_says_what_is_wrong(
    dev_server: DevServer, tmp_path: Path
) -> None:
    assert dev_server.admin_key is not None
    code, out, err = await _syncline(
        "verify",
        "--url",
        dev_server.url,
        "--admin-key",
        dev_server.admin_key,
        "--seconds",
        "2",
        "--clients",
        "3",
        "--seed",
        "11",
        "--json",
    )
    assert code == 0, err
    assert "seed 11" in err and "list-append: 3 clients for 2 s" in err
    report = json.loads(out)
    assert report["valid"] is True and report["seed"] == 11
    assert [w["workload"] for w in report["workloads"]] == [
        "list-append",
        "bank",
        "subscriptions",
        "scheduled",
    ]

    code, _, err = await _syncline("verify", "--url", dev_server.url)
    assert code == 2 and "needs --admin-key" in err
    code, _, err = await _syncline(
        "verify", "--admin-key", "k", "--workload", "register", "--url", dev_server.url
    )
    assert code == 2 and "--workload: choose from list-append, bank, subscriptions" in err
    code, _, err = await _syncline(
        "verify", "--url", dev_server.url, "--admin-key", "syncline-admin|x|00", "--seconds", "1"
    )
    assert code == 2 and "admin key" in err
