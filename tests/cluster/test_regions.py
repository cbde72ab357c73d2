"""Regions: a sync node reading a logical replica of the primary, a gateway per region.

The primary is the session's PostgreSQL; the replica a second PostgreSQL server
started by the test, subscribed through ``add_replica``. Writes from either
region commit through the one txn leader on the primary.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from syncline._errors import ConfigError
from syncline.cluster._regional_storage import RegionalStorage
from syncline.devservers import FaultProxy, LocalPostgres
from syncline.storage import (
    PostgresStorage,
    add_replica,
    promote_replica,
    remove_replica,
    replica_status,
)
from syncline.sync import decode_ts
from tests.cluster.conftest import (
    GatewayFactory,
    SyncClient,
    SyncClientFactory,
    SyncNodeFactory,
    TxnCluster,
    TxnProcess,
)

pytestmark = pytest.mark.cluster

REGION = "eu-west"


@dataclass
class Replica:
    server: LocalPostgres
    dsn: str
    primary_dsn: str
    link: FaultProxy
    """The replication link: the replica reaches the primary through it."""

    async def caught_up(self, timeout: float = 30.0) -> None:
        await caught_up(self.primary_dsn, self.dsn, REGION, timeout=timeout)


async def caught_up(primary_dsn: str, dsn: str, region: str, *, timeout: float = 30.0) -> None:
    """Wait until the replica copied the primary and has its newest commit."""
    deadline = time.monotonic() + timeout
    while True:
        status = await replica_status(primary_dsn, dsn, region)
        if status.copied and not status.behind:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the replica did not catch up: {status}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def replica(pg_dsn: str, txn_cluster: TxnCluster) -> AsyncIterator[Replica]:
    """A second PostgreSQL following the primary as region eu-west's replica."""
    # PostgreSQL runs as its own user when the tests run as root: it must enter.
    base = Path(tempfile.mkdtemp(prefix="syncline-replica-"))
    base.chmod(0o755)
    server = LocalPostgres(base / "data")
    primary = conninfo_to_dict(pg_dsn)
    link = FaultProxy(int(str(primary.get("port", 5432))))
    await link.start()
    await server.start()
    try:
        dsn = await server.create_database("replica")
        through_link = make_conninfo(pg_dsn, host="127.0.0.1", port=str(link.port))
        await add_replica(pg_dsn, dsn, REGION, primary_conninfo=through_link)
        yield Replica(server, dsn, pg_dsn, link)
    finally:
        # Drops the slot on the primary too, which the primary's database needs
        # before it can be dropped.
        with contextlib.suppress(Exception):
            await remove_replica(pg_dsn, REGION, replica_dsn=dsn)
        await server.stop()
        await link.close()
        shutil.rmtree(base, ignore_errors=True)


async def two_regions(
    replica: Replica,
    make_sync_node: SyncNodeFactory,
    make_gateway: GatewayFactory,
    sync_client: SyncClientFactory,
    **eu_settings: Any,
) -> tuple[SyncClient, SyncClient]:
    """A client in the primary's region and one in the replica's, both on counter r."""
    await replica.caught_up()
    await make_sync_node(region="us-east")
    await make_sync_node(region=REGION, dsn=replica.dsn, **eu_settings)
    us = await make_gateway(region="us-east")
    eu = await make_gateway(region=REGION)
    clients = []
    for gateway in (us, eu):
        client = await sync_client(f"127.0.0.1:{gateway.grpc_port}")
        await client.subscribe(0, "bank:counter", {"name": "r"})
        await client.wait_value(0, 0.0)
        clients.append(client)
    return clients[0], clients[1]


async def test_a_region_on_a_replica_sees_writes_from_the_primary_and_its_own(
    replica: Replica,
    make_sync_node: SyncNodeFactory,
    make_gateway: GatewayFactory,
    sync_client: SyncClientFactory,
) -> None:
    us, eu = await two_regions(replica, make_sync_node, make_gateway, sync_client)

    request_id = await us.mutate("bank:increment", {"name": "r"})
    assert (await us.mutation_response(request_id))["success"] is True
    await eu.wait_value(0, 1.0)

    # Read-your-writes in the replica's region: the mutation commits on the
    # primary; the first Transition at or past its ts already shows it.
    request_id = await eu.mutate("bank:increment", {"name": "r"})
    response = await eu.mutation_response(request_id)
    assert response["success"] is True
    committed = decode_ts(response["ts"], "ts")
    await eu.wait_until(lambda: eu.ts >= committed, what="a Transition at the mutation's ts")
    first = next(
        f
        for f in eu.received
        if f["type"] == "Transition" and decode_ts(f["endVersion"]["ts"], "ts") >= committed
    )
    assert [m["value"] for m in first["modifications"] if m["type"] == "QueryUpdated"] == [2.0]
    await us.wait_value(0, 2.0)


async def test_a_stopped_replica_catches_up_and_its_region_converges(
    replica: Replica,
    make_sync_node: SyncNodeFactory,
    make_gateway: GatewayFactory,
    sync_client: SyncClientFactory,
    pg_dsn: str,
) -> None:
    us, eu = await two_regions(replica, make_sync_node, make_gateway, sync_client)
    await replica.server.stop()
    for _ in range(5):
        request_id = await us.mutate("bank:increment", {"name": "r"})
        assert (await us.mutation_response(request_id))["success"] is True
    await us.wait_value(0, 5.0)
    await replica.server.start()
    await eu.wait_value(0, 5.0, timeout=60)
    await replica.caught_up()
    # Every replicated table holds exactly what the primary holds.
    for table, key in (
        ("documents", "id"),
        ("index_entries", "index_id, key"),
        ("commit_log", "ts"),
    ):
        assert await rows(replica.dsn, table, key) == await rows(pg_dsn, table, key), table


async def rows(dsn: str, table: str, order: str) -> list[tuple[object, ...]]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute(f"SELECT * FROM {table} ORDER BY {order}")  # type: ignore[arg-type]
        return await cur.fetchall()


async def test_a_region_cut_off_from_the_primary_serves_reads_refuses_writes_and_converges(
    replica: Replica,
    make_sync_node: SyncNodeFactory,
    make_gateway: GatewayFactory,
    sync_client: SyncClientFactory,
    txn_cluster: TxnCluster,
) -> None:
    # The region's links to the primary's region: replication, and one per txn node.
    txn_links = [FaultProxy(int(node.address.rsplit(":", 1)[1])) for node in txn_cluster.nodes]
    for proxy in txn_links:
        await proxy.start()
    links = [replica.link, *txn_links]
    routes = {node.address: p.address for node, p in zip(txn_cluster.nodes, txn_links, strict=True)}
    try:
        us, eu = await two_regions(
            replica,
            make_sync_node,
            make_gateway,
            sync_client,
            txn_routes=routes,
            commit_timeout_seconds=2.0,
        )
        for link in links:
            link.hold = True
        request_id = await us.mutate("bank:increment", {"name": "r"})
        assert (await us.mutation_response(request_id))["success"] is True
        # Writes from the cut-off region fail with a retryable error...
        request_id = await eu.mutate("bank:increment", {"name": "r"})
        response = await eu.mutation_response(request_id, timeout=30)
        assert response["success"] is False
        assert "no txn leader answered" in str(response["result"])
        # ...while its reads are still served, from its replica (stale).
        await eu.subscribe(1, "bank:counter", {"name": "r"})
        await eu.wait_value(1, 0.0)
        for link in links:
            link.heal()
        await eu.wait_value(0, 1.0, timeout=60)
        request_id = await eu.mutate("bank:increment", {"name": "r"})
        assert (await eu.mutation_response(request_id, timeout=30))["success"] is True
        await us.wait_value(0, 2.0)
        await eu.wait_value(0, 2.0)
    finally:
        for proxy in txn_links:
            await proxy.close()


async def slots(dsn: str) -> list[str]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute("SELECT slot_name FROM pg_replication_slots ORDER BY 1")
        return [row[0] for row in await cur.fetchall()]


async def test_adding_a_region_to_a_live_cluster_copies_then_follows_and_removing_it_frees_its_slot(
    pg_dsn: str, txn_cluster: TxnCluster, make_runner: Any, tmp_path: Path
) -> None:
    runner = await make_runner()
    for name in ("a", "b", "c"):
        await runner.mutation("bank:increment", {"name": name})
    base = Path(tempfile.mkdtemp(prefix="syncline-late-replica-"))
    base.chmod(0o755)
    server = LocalPostgres(base / "data")
    await server.start()
    try:
        dsn = await server.create_database("late")
        await add_replica(pg_dsn, dsn, "ap-south")
        await add_replica(pg_dsn, dsn, "ap-south")  # idempotent
        await caught_up(pg_dsn, dsn, "ap-south")
        await runner.mutation("bank:increment", {"name": "a"})
        await caught_up(pg_dsn, dsn, "ap-south")
        assert await rows(dsn, "documents", "id") == await rows(pg_dsn, "documents", "id")
        assert "syncline_ap_south" in await slots(pg_dsn)
        await remove_replica(pg_dsn, "ap-south", replica_dsn=dsn)
        assert "syncline_ap_south" not in await slots(pg_dsn)
        with pytest.raises(ConfigError, match="must start empty"):
            await add_replica(pg_dsn, dsn, "ap-south")
        # A replica gone for good: its slot is dropped on the primary alone.
        await add_replica(pg_dsn, await server.create_database("fresh"), "ap-south")
        await server.stop()
        await remove_replica(pg_dsn, "ap-south")
        assert "syncline_ap_south" not in await slots(pg_dsn)
    finally:
        await server.stop()
        shutil.rmtree(base, ignore_errors=True)


async def test_a_region_reads_the_primary_while_its_replica_lags_and_returns_after(
    replica: Replica,
    make_sync_node: SyncNodeFactory,
    make_gateway: GatewayFactory,
    sync_client: SyncClientFactory,
    pg_dsn: str,
) -> None:
    regional = RegionalStorage(
        PostgresStorage(replica.dsn, pool_min=1, pool_max=8),
        PostgresStorage(pg_dsn, pool_min=1, pool_max=8),
        max_lag_seconds=1.0,
        check_interval_seconds=0.1,
    )
    us, eu = await two_regions(replica, make_sync_node, make_gateway, sync_client, storage=regional)
    assert not regional.on_primary
    replica.link.hold = True  # replication stalls; the region still reaches the primary
    request_id = await us.mutate("bank:increment", {"name": "r"})
    assert (await us.mutation_response(request_id))["success"] is True
    # After the bound, the region reads the primary and its subscriber converges.
    await eu.wait_value(0, 1.0, timeout=30)
    assert regional.on_primary
    replica.link.heal()
    await replica.caught_up()
    deadline = time.monotonic() + 30
    while regional.on_primary:
        assert time.monotonic() < deadline, "reads did not move back to the replica"
        await asyncio.sleep(0.05)
    request_id = await us.mutate("bank:increment", {"name": "r"})
    assert (await us.mutation_response(request_id))["success"] is True
    await eu.wait_value(0, 2.0)


async def test_replication_resumes_after_the_primary_restarts_with_no_commit_lost_or_repeated(
    replica: Replica,
    make_sync_node: SyncNodeFactory,
    make_gateway: GatewayFactory,
    sync_client: SyncClientFactory,
    postgres_server: LocalPostgres,
    pg_dsn: str,
) -> None:
    us, eu = await two_regions(replica, make_sync_node, make_gateway, sync_client)
    for i in range(20):
        if i == 10:
            await postgres_server.restart(mode="immediate")
        # Mutations wait out the restart (the runner retries), then commit once each.
        request_id = await us.mutate("bank:increment", {"name": "r"})
        response = await us.mutation_response(request_id, timeout=60)
        assert response["success"] is True, response
    await eu.wait_value(0, 20.0, timeout=60)
    await replica.caught_up(timeout=60)
    for table, key in (
        ("documents", "id"),
        ("index_entries", "index_id, key"),
        ("commit_log", "ts"),
    ):
        assert await rows(replica.dsn, table, key) == await rows(pg_dsn, table, key), table


async def test_a_replica_promoted_after_losing_the_primary_keeps_data_and_code_and_commits_on(
    replica: Replica,
    make_sync_node: SyncNodeFactory,
    sync_client: SyncClientFactory,
    txn_cluster: TxnCluster,
    zk_hosts: str,
    tmp_path: Path,
) -> None:
    old = await sync_client((await make_sync_node(region="us-east")).address)
    await old.subscribe(0, "bank:counter", {"name": "p"})
    for expected in (1.0, 2.0, 3.0):
        request_id = await old.mutate("bank:increment", {"name": "p"})
        response = await old.mutation_response(request_id)
        await old.wait_value(0, expected)
    last_ts = decode_ts(response["ts"], "ts")
    await replica.caught_up()

    # The primary is lost: nothing commits there again (docs/regions.md, steps 1-3).
    for node in txn_cluster.nodes:
        node.stop()
    await promote_replica(replica.dsn, REGION)
    promoted = TxnProcess(replica.dsn, zk_hosts, tmp_path / "txn-promoted.log")
    promoted.start()
    try:
        await TxnCluster([promoted]).leader()
        client = await sync_client((await make_sync_node(region=REGION, dsn=replica.dsn)).address)
        await client.subscribe(0, "bank:counter", {"name": "p"})
        await client.wait_value(0, 3.0)
        request_id = await client.mutate("bank:increment", {"name": "p"})
        response = await client.mutation_response(request_id, timeout=30)
        assert response["success"] is True and decode_ts(response["ts"], "ts") > last_ts
        await client.wait_value(0, 4.0)
    finally:
        promoted.stop()
