"""Which faults a local cluster offers, how a list of them is read, and the
client links ``drop-clients`` resets (no process is started here)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import syncline.devservers._faketime as faketime
from syncline._errors import ConfigError
from syncline.cluster._local_cluster import LocalCluster
from syncline.cluster._nemesis import Nemesis, fault_names, parse_faults
from syncline.devservers import faketime_environment


def cluster(tmp_path: Path, regions: list[str] | None = None) -> LocalCluster:
    return LocalCluster.create(tmp_path / "cluster", tmp_path / "app", regions=regions)


def test_a_single_region_cluster_offers_every_fault_but_those_between_regions(
    tmp_path: Path,
) -> None:
    names = fault_names(cluster(tmp_path))
    for role in ("txn", "sync", "gateway", "scheduler"):
        assert f"kill-{role}" in names and f"stop-{role}" in names
    assert {"expire-txn", "expire-scheduler", "skew-txn", "skew-scheduler"} <= set(names)
    assert "drop-clients" in names
    assert {"restart-postgres", "restart-redis"} <= set(names)
    assert not [n for n in names if n.startswith(("partition-", "pause-replica-"))]


def test_each_other_region_can_be_partitioned_and_its_replica_paused(tmp_path: Path) -> None:
    names = fault_names(cluster(tmp_path, ["us-east", "eu-west", "ap-south"]))
    for region in ("eu-west", "ap-south"):
        assert f"partition-{region}" in names and f"pause-replica-{region}" in names
    assert "partition-us-east" not in names  # the primary's region


def test_every_elected_node_reaches_zookeeper_through_a_link_of_its_own(tmp_path: Path) -> None:
    local = cluster(tmp_path)
    assert set(local.zookeeper_links) == {"txn0", "txn1", "scheduler0", "scheduler1"}
    # The state survives a reload: a later command finds the same links.
    again = LocalCluster.open(tmp_path / "cluster")
    assert {name: link.port for name, link in again.zookeeper_links.items()} == {
        name: link.port for name, link in local.zookeeper_links.items()
    }


def test_a_fault_list_is_read_and_an_unknown_fault_named(tmp_path: Path) -> None:
    local = cluster(tmp_path, ["local", "eu"])
    assert parse_faults(local, "kill-txn, partition-eu") == ["kill-txn", "partition-eu"]
    assert parse_faults(local, "all") == fault_names(local)
    with pytest.raises(ConfigError, match="unknown fault kill-db; this cluster supports: kill-txn"):
        parse_faults(local, "kill-txn,kill-db")
    with pytest.raises(ConfigError, match=r"\(none given\)"):
        parse_faults(local, " , ")


def test_clock_skew_without_libfaketime_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(faketime, "_LIBRARY_PATTERNS", (str(tmp_path / "none" / "*.so"),))
    with pytest.raises(ConfigError, match="apt-get install -y faketime"):
        parse_faults(cluster(tmp_path), "kill-txn,skew-scheduler")
    assert parse_faults(cluster(tmp_path), "kill-txn") == ["kill-txn"]


def test_a_skewed_clock_moves_the_wall_clock_only() -> None:
    env = faketime_environment(-4.5)
    assert env["FAKETIME"] == "-4.5s" and env["FAKETIME_DONT_FAKE_MONOTONIC"] == "1"
    assert faketime_environment(3)["FAKETIME"] == "+3s"


async def test_clients_connect_through_links_only_when_their_connections_are_dropped(
    tmp_path: Path,
) -> None:
    local = cluster(tmp_path)
    urls = ("http://127.0.0.1:3210", "http://127.0.0.1:3211")
    async with Nemesis(local, ["kill-txn"]).client_links(urls) as same:
        assert same == urls

    # A server to reach through the link, and a connection the fault resets.
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.read(100))
        await writer.drain()
        await reader.read()  # until the link resets it
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    nemesis = Nemesis(local, ["drop-clients"], seed=1)
    try:
        async with nemesis.client_links([f"http://127.0.0.1:{port}/x"]) as (linked,):
            assert linked.startswith("http://127.0.0.1:") and linked.endswith("/x")
            assert linked != f"http://127.0.0.1:{port}/x"
            link_port = int(linked.split(":")[2].split("/")[0])
            reader, writer = await asyncio.open_connection("127.0.0.1", link_port)
            writer.write(b"ping")
            assert await reader.read(4) == b"ping"
            target, heal = await nemesis._inject("drop-clients")
            assert "reset every" in target
            async with asyncio.timeout(5):
                assert await reader.read() == b""  # reset: the connection is gone
            await heal()
            writer.close()
    finally:
        server.close()
        await server.wait_closed()


def test_without_a_cluster_only_connections_can_be_dropped() -> None:
    assert parse_faults(None, "all") == ["drop-clients"]
    with pytest.raises(ConfigError, match="without --cluster, only: drop-clients"):
        parse_faults(None, "kill-txn")


async def test_dropped_connections_need_plain_http() -> None:
    nemesis = Nemesis(None, ["drop-clients"])
    with pytest.raises(ConfigError, match=r"needs http:// URLs, not https://example\.com"):
        async with nemesis.client_links(["https://example.com"]):
            pass
