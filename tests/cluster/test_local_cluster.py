"""``syncline cluster up|down|status``: a whole cluster from local binaries, driven by the CLI
as a user would, then used by the official clients through its gateway."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from convex import ConvexClient

from syncline.client import Client
from syncline.devservers._process import pid_alive
from syncline.verify import WorkloadConfig, verify
from tests.cluster.conftest import BANK
from tests.fixtures.local_cluster import status, syncline
from tests.fixtures.node_driver import NodeDriver

pytestmark = pytest.mark.cluster


CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "syncline"


def metric_names(exposition: str) -> set[str]:
    """The metric names of a Prometheus text exposition."""
    return {
        re.split(r"[{ ]", line, maxsplit=1)[0]
        for line in exposition.splitlines()
        if line and not line.startswith("#")
    }


def referenced_metrics() -> set[str]:
    """Every metric the chart's dashboards and alert rules read."""
    text = (CHART / "templates" / "monitoring.yaml").read_text()
    for dashboard in (CHART / "dashboards").glob("*.json"):
        for panel in json.loads(dashboard.read_text())["panels"]:
            text += " ".join(target["expr"] for target in panel["targets"])
    tokens = set(re.findall(r"\bsyncline_[a-z_]+", text))
    labels = {
        label.strip()
        for grouping in re.findall(r"\bby\s*\(([^)]*)\)", text)
        for label in grouping.split(",")
    }
    labels |= set(re.findall(r"\b(\w+)\s*!?=~?\s*\"", text))  # label matchers
    labels |= set(re.findall(r"\$labels\.(\w+)", text))
    return tokens - labels


async def metrics_by_role(report: dict[str, Any], gateway_url: str) -> dict[str, list[str]]:
    """Each service's /metrics text, by role."""
    texts: dict[str, list[str]] = {}
    async with aiohttp.ClientSession() as http:
        for process in report["processes"]:
            role = process["role"]
            if role not in ("gateway", "sync", "txn", "scheduler"):
                continue
            port = gateway_url.rsplit(":", 1)[1] if role == "gateway" else process["http_port"]
            async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
                assert response.status == 200
                assert response.content_type == "text/plain"
                text = await response.text()
            assert f'service_name="syncline-{role}"' in text
            texts.setdefault(role, []).append(text)
    return texts


def traces(directory: Path) -> list[dict[str, Any]]:
    """Every span the services wrote (SYNCLINE_TRACE_DIR)."""
    return [
        json.loads(line)
        for path in directory.glob("*.jsonl")
        for line in path.read_text().splitlines()
        if line
    ]


def hops(spans: list[dict[str, Any]], root: dict[str, Any]) -> list[str]:
    """The names of the spans under ``root``, following each child's first child."""
    chain, current = [root["name"]], root
    while True:
        children = [s for s in spans if s["parent_span_id"] == current["span_id"]]
        if not children:
            return chain
        current = children[0]
        chain.append(current["name"])


async def test_up_serves_the_official_clients_status_reports_down_stops(
    data_dir: Path, node: NodeDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace_dir = data_dir.parent / "traces"
    monkeypatch.setenv("SYNCLINE_TRACE_DIR", str(trace_dir))
    code, out, err = await syncline("cluster", "up", "--app", str(BANK), "--data", str(data_dir))
    assert code == 0, err
    assert "txn node" in err and "leads" in err  # progress on stderr
    lines = dict(line.split(": ", 1) for line in out.strip().splitlines())
    url, admin_key = lines["gateway"], lines["admin key"]

    report = await status(data_dir)
    assert report["running"] is True and report["gateways"] == {"local": url}
    assert report["admin_key"] == admin_key
    roles = [p["role"] for p in report["processes"]]
    services = ["txn", "txn", "sync", "sync", "gateway", "scheduler", "scheduler"]
    links = ["link"] * 4  # each txn and scheduler node's own link to ZooKeeper
    assert sorted(roles) == sorted(["postgres", "zookeeper", "redis", *services, *links])
    for elected in ("txn", "scheduler"):
        leaders = [p["leader"] for p in report["processes"] if p["role"] == elected]
        assert leaders.count(True) == 1, f"{elected}: {leaders}"
    assert all(pid_alive(p["pid"]) for p in report["processes"])

    await node.call("client", name="js", url=url)
    sub = await node.call("subscribe", client="js", path="bank:counter", args={"name": "c"})
    assert await node.wait_for_update(sub, lambda v: v == 0.0) == 0.0
    await node.call("mutation", client="js", path="bank:increment", args={"name": "c"})
    assert await node.wait_for_update(sub, lambda v: v == 1.0) == 1.0
    # The PyPI client holds the GIL while it waits: its own process.
    script = (
        "import sys; from convex import ConvexClient; c = ConvexClient(sys.argv[1]); "
        "c.set_admin_auth(sys.argv[2]); c.mutation('bank:increment', {'name': 'c'}); "
        "print(c.query('bank:counter', {'name': 'c'}))"
    )
    python = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, url, admin_key, stdout=asyncio.subprocess.PIPE
    )
    output, _ = await asyncio.wait_for(python.communicate(), 60)
    assert python.returncode == 0 and float(output) == 2.0
    assert await node.wait_for_update(sub, lambda v: v == 2.0) == 2.0
    await node.call("close", client="js")

    # One mutation's trace shows every hop, over the sync protocol and over HTTP.
    async with aiohttp.ClientSession() as http:
        body = {"path": "bank:increment", "args": {"name": "traced"}, "format": "json"}
        async with http.post(f"{url}/api/mutation", json=body) as response:
            assert response.status == 200
    spans = traces(trace_dir)
    for entry in ("gateway mutation", "gateway call"):
        roots = [
            s
            for s in spans
            if s["name"] == entry
            and s["attributes"].get("syncline.function.path") == "bank:increment"
        ]
        assert roots, f"no {entry} span"
        chain = hops([s for s in spans if s["trace_id"] == roots[-1]["trace_id"]], roots[-1])
        sync_hop = "sync mutation" if entry == "gateway mutation" else "sync call"
        assert chain == [entry, sync_hop, "txn commit", "postgresql write batch"], chain
    services = {s["service"] for s in spans if s["trace_id"] == roots[-1]["trace_id"]}
    assert services == {"gateway", "sync", "txn"}
    # The step that re-ran subscriptions and pushed a commit's results links to it.
    mutations = {(s["trace_id"], s["span_id"]) for s in spans if s["name"] == "sync mutation"}
    published = [
        link
        for s in spans
        if s["name"] == "sync publish"
        for link in s["links"]
        if (link["trace_id"], link["span_id"]) in mutations
    ]
    assert published, "no publish step links to a mutation"

    # Every service serves its metrics for Prometheus, the ones it records among them.
    # A scheduled job first, so the scheduler has run one.
    await node.call("client", name="jobs", url=url)
    await node.call(
        "mutation",
        client="jobs",
        path="jobs:schedule_hits",
        args={"prefix": "metrics", "start": 0.0, "count": 1.0},
    )
    texts = await metrics_by_role(report, url)
    for _ in range(100):
        if any("syncline_scheduler_job_lateness_seconds_count" in t for t in texts["scheduler"]):
            break
        await asyncio.sleep(0.1)
        texts = await metrics_by_role(report, url)

    def leading(role: str) -> list[str]:
        return [
            text
            for text in texts[role]
            if any(
                line.startswith("syncline_election_leader") and line.endswith(" 1.0")
                for line in text.splitlines()
            )
        ]

    assert "syncline_gateway_sessions" in texts["gateway"][0]
    (txn_leader,) = leading("txn")
    assert "syncline_txn_commit_batch_size_bucket" in txn_leader
    assert "syncline_txn_commit_batch_duration_seconds_bucket" in txn_leader
    assert len(leading("scheduler")) == 1
    served = [t for t in texts["sync"] if 'syncline_function_path="bank:increment"' in t]
    assert served, "no sync node recorded the mutations"
    # Every metric a dashboard panel or an alert rule reads exists (replication lag
    # needs regions: the three-region test checks it).
    exposed = {name for role in texts.values() for text in role for name in metric_names(text)}
    assert referenced_metrics() - {"syncline_replication_lag_seconds"} <= exposed
    for fragment in (
        'syncline_function_kind="mutation"',
        "syncline_sync_sessions",
        "syncline_sync_query_reruns_total",
        "syncline_sync_subscriptions",
    ):
        assert fragment in served[0], fragment

    code, _, err = await syncline("cluster", "down", "--data", str(data_dir))
    assert code == 0, err
    assert not any(pid_alive(p["pid"]) for p in report["processes"])
    assert all(p["pid"] is None for p in (await status(data_dir))["processes"])

    # Up again: same ports, same data.
    code, out, err = await syncline("cluster", "up", "--app", str(BANK), "--data", str(data_dir))
    assert code == 0, err
    assert f"gateway: {url}" in out
    await node.call("client", name="again", url=url)
    assert await node.call("query", client="again", path="bank:counter", args={"name": "c"}) == 2


async def test_status_and_down_name_a_missing_cluster(data_dir: Path) -> None:
    for action in ("status", "down"):
        code, _, err = await syncline("cluster", action, "--data", str(data_dir))
        assert code == 1
        assert f"no cluster in {data_dir}: start one with `syncline cluster up" in err
    code, _, err = await syncline("cluster", "up", "--app", str(data_dir / "nope"))
    assert code == 1 and "does not exist" in err


async def latest_values(
    node: NodeDriver, subs: dict[str, int], done: Any, *, timeout: float = 30.0
) -> dict[str, Any]:
    """Each subscription's latest value (by name), read from the events until ``done``."""
    latest: dict[str, Any] = {}
    by_sub = {sub: name for name, sub in subs.items()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not done(latest):
        event = await node.event(max(0.01, deadline - loop.time()))
        if event.get("sub") in by_sub and "value" in event:
            latest[by_sub[event["sub"]]] = event["value"]
    return latest


async def test_three_regions_see_each_others_writes_and_read_their_own(
    data_dir: Path, node: NodeDriver
) -> None:
    regions = ["us-east", "eu-west", "ap-southeast"]
    code, out, err = await syncline(
        "cluster",
        "up",
        "--app",
        str(BANK),
        "--data",
        str(data_dir),
        "--regions",
        ",".join(regions),
        "--inter-region-delay-ms",
        "20",
        timeout=240,
    )
    assert code == 0, err
    urls = {
        line.split(":", 1)[0].removeprefix("gateway ").strip(): line.split(": ", 1)[1]
        for line in out.splitlines()
        if line.startswith("gateway ")
    }
    assert sorted(urls) == sorted(regions)
    report = await status(data_dir)
    assert report["primary_region"] == "us-east"
    assert sorted(report["replication"]) == ["ap-southeast", "eu-west"]

    subs = {}
    for region, url in urls.items():
        await node.call("client", name=region, url=url)
        subs[region] = await node.call(
            "subscribe", client=region, path="bank:counter", args={"name": "g"}
        )
    await latest_values(node, subs, lambda v: len(v) == 3 and set(v.values()) == {0.0})

    # A write in one region reaches the subscribers of every region.
    await node.call("mutation", client="eu-west", path="bank:increment", args={"name": "g"})
    await latest_values(node, subs, lambda v: v == dict.fromkeys(regions, 1.0))

    # Read-your-writes in a region far from the primary: the client's own
    # subscription already shows its write when its mutation resolves.
    await node.call("mutation", client="ap-southeast", path="bank:increment", args={"name": "g"})
    seen: list[Any] = []
    while True:
        try:
            event = await node.event(timeout=0.01)
        except TimeoutError:
            break
        if event.get("sub") == subs["ap-southeast"]:
            seen.append(event["value"])
    assert seen and seen[-1] == 2.0

    # Presence spans the regions: members joining through the npm client, the PyPI
    # client and syncline.Client, each in its own region, are seen in every region,
    # and a client that leaves is gone everywhere.
    room = {"room": "map"}
    presence = {
        region: await node.call("subscribe", client=region, path="presence:members", args=room)
        for region in regions
    }

    def states(members: Any) -> list[Any]:
        return sorted(json.dumps(m["state"], sort_keys=True) for m in members)

    await node.call(
        "mutation", client="eu-west", path="presence:join", args={**room, "state": {"who": "npm"}}
    )
    native = Client(urls["ap-southeast"])
    await native.connect()
    try:
        await native.mutation("presence:join", {**room, "state": {"who": "native"}})
        pypi = ConvexClient(urls["us-east"])
        await asyncio.to_thread(pypi.mutation, "presence:join", {**room, "state": {"who": "pypi"}})
        everyone = states([{"state": {"who": w}} for w in ("native", "npm", "pypi")])
        await latest_values(
            node, presence, lambda v: len(v) == 3 and all(states(m) == everyone for m in v.values())
        )
        from_native = await native.query("presence:members", room)
        assert states(from_native) == everyone
    finally:
        await native.close()
    without_native = states([{"state": {"who": w}} for w in ("npm", "pypi")])
    await latest_values(
        node, presence, lambda v: all(states(m) == without_native for m in v.values())
    )

    # A region's sync node reports its replica's lag (the Regions dashboard's panel).
    texts = await metrics_by_role(report, urls["us-east"])
    lagging = [t for t in texts["sync"] if "syncline_replication_lag_seconds" in metric_names(t)]
    assert len(lagging) == 2  # eu-west and ap-southeast; us-east reads the primary

    # The admin dashboard, served by every gateway, and what its views read: the
    # health view sees every region's gateway and sync node, the replicas' lag and
    # both elections' leaders; the log tail spans regions.
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{urls['eu-west']}/dashboard") as response,
    ):
        assert response.status == 200 and response.content_type == "text/html"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    report_key = report["admin_key"]
    admin = Client(urls["eu-west"], admin_key=report_key)
    writer = Client(urls["ap-southeast"])
    await admin.connect()
    await writer.connect()
    try:

        def complete(health: Any) -> bool:
            by_region = {r["name"]: r for r in health["regions"]}
            return sorted(by_region) == sorted(regions) and all(
                {n["role"] for n in r["nodes"]} == {"gateway", "sync"} for r in health["regions"]
            )

        async with asyncio.timeout(30):
            async for health in admin.subscribe("_system/health:cluster"):
                if complete(health):
                    break
        assert health["mode"] == "cluster"
        by_region = {r["name"]: r for r in health["regions"]}
        assert by_region["us-east"]["primary"]
        assert by_region["us-east"]["replicationLagSeconds"] is None
        for replica_region in ("eu-west", "ap-southeast"):
            assert not by_region[replica_region]["primary"]
            assert by_region[replica_region]["replicationLagSeconds"] is not None
        leaders = {leader["role"]: leader for leader in health["leaders"]}
        assert leaders["txn"]["id"] and leaders["txn"]["standbys"] == 1
        assert leaders["scheduler"]["id"] and leaders["scheduler"]["standbys"] == 1

        await writer.mutation("bank:shout", {"text": "hello from ap-southeast"})
        async with asyncio.timeout(30):
            async for entries in admin.subscribe("_system/logs:tail", {"path": "bank:shout"}):
                if any(e["message"] == "hello from ap-southeast" for e in entries):
                    break
        # What a scheduled function prints reaches it too, from the scheduler node.
        await writer.mutation("jobs:schedule_shout", {"text": "hello from the scheduler"})
        async with asyncio.timeout(30):
            async for entries in admin.subscribe("_system/logs:tail", {"path": "bank:shout"}):
                if any(e["message"] == "hello from the scheduler" for e in entries):
                    break
    finally:
        await writer.close()
        await admin.close()

    # `syncline verify` across the three regions at once: clients in every region,
    # no anomaly, every acknowledged write in the final reads.
    verified = await verify(
        WorkloadConfig(
            urls=tuple(urls[r] for r in regions),
            admin_key=report_key,
            seconds=3.0,
            clients=6,
            seed=5,
        )
    )
    assert verified.valid, verified.text()
    assert all(w.outcomes["ok"] > 20 for w in verified.workloads), verified.text()
