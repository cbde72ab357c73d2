"""Sync nodes on real PostgreSQL, ZooKeeper and txn processes, driven over gRPC sessions.

Clients speak Convex's sync protocol (JSON frames) over ``Sync.Session`` streams.
Nodes that must learn of commits only through NOTIFY get a poll interval far
longer than any test, so the fallback poll cannot be what woke them.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from syncline._errors import ConfigError
from syncline.auth import AdminKeys
from syncline.cluster import SyncConfig, SyncNode
from syncline.devservers import LocalPostgres
from syncline.runtime._deployment import CATALOG_VERSION_KEY
from syncline.storage import PostgresStorage
from syncline.sync import decode_ts
from syncline.v1 import syncline_pb2 as pb
from syncline.v1 import syncline_pb2_grpc as pb_grpc
from tests.cluster.conftest import SyncClientFactory, SyncNodeFactory, SyncProcessFactory
from tests.fixtures.infra import assert_eventually, expire_zk_session

pytestmark = pytest.mark.cluster

NOTIFY_ONLY = {"poll_interval_seconds": 3600.0}
"""A node that can learn of a commit only through NOTIFY."""


async def test_a_mutation_on_the_stream_updates_its_subscription_after_its_response(
    make_sync_node: SyncNodeFactory, sync_client: SyncClientFactory
) -> None:
    node = await make_sync_node(**NOTIFY_ONLY)
    client = await sync_client(node.address)
    await client.subscribe(0, "bank:counter", {"name": "x"})
    await client.wait_value(0, 0.0)

    request_id = await client.mutate("bank:increment", {"name": "x"})
    await client.wait_value(0, 1.0)
    response = await client.mutation_response(request_id)
    assert response["success"] is True and response["result"] == 1.0
    committed_ts = decode_ts(response["ts"], "ts")
    # The response precedes the first Transition that reaches its ts.
    position = client.received.index(response)
    reaching = [
        i
        for i, frame in enumerate(client.received)
        if frame["type"] == "Transition"
        and decode_ts(frame["endVersion"]["ts"], "ts") >= committed_ts
    ]
    assert reaching and position < reaching[0]
    assert client.ts >= committed_ts


async def test_a_commit_through_node_a_reaches_a_subscription_on_node_b(
    make_sync_node: SyncNodeFactory, sync_client: SyncClientFactory
) -> None:
    node_a = await make_sync_node()
    node_b = await make_sync_node(**NOTIFY_ONLY)
    watcher = await sync_client(node_b.address)
    await watcher.subscribe(0, "bank:counter", {"name": "shared"})
    await watcher.wait_value(0, 0.0)

    writer = await sync_client(node_a.address)
    for expected in (1.0, 2.0, 3.0):
        request_id = await writer.mutate("bank:increment", {"name": "shared"})
        response = await writer.mutation_response(request_id)
        assert response["result"] == expected
        # Node B never polls: only the commit's NOTIFY can have woken it.
        await watcher.wait_value(0, expected)
        assert watcher.ts >= decode_ts(response["ts"], "ts")


async def test_a_commit_made_while_listen_is_broken_still_reaches_node_b(
    make_sync_node: SyncNodeFactory,
    sync_client: SyncClientFactory,
    sync_process: SyncProcessFactory,
    postgres_server: LocalPostgres,
) -> None:
    node_a = await make_sync_node()
    node_b = await sync_process("--poll-interval", "3600")  # learns of commits only by NOTIFY
    watcher = await sync_client(node_b.address)
    await watcher.subscribe(0, "bank:counter", {"name": "y"})
    await watcher.wait_value(0, 0.0)

    # Node B is frozen while PostgreSQL restarts (its LISTEN connection dies) and while
    # the commit lands, so it cannot have reconnected in time to be notified of it: only
    # the catch-up ts it takes when it listens again can bring the commit to it.
    node_b.signal(signal.SIGSTOP)
    try:
        await postgres_server.restart(mode="immediate")
        writer = await sync_client(node_a.address)
        request_id = await writer.mutate("bank:increment", {"name": "y"})
        response = await writer.mutation_response(request_id, timeout=40)
        assert response["success"] is True, response
    finally:
        node_b.signal(signal.SIGCONT)
    await watcher.wait_value(0, 1.0, timeout=30)
    assert watcher.status is None  # the session itself was never interrupted


async def _zk_get(zk_hosts: str, path: str) -> dict[str, Any] | None:
    def read() -> dict[str, Any] | None:
        client = KazooClient(hosts=zk_hosts)
        client.start(timeout=10)
        try:
            data, _ = client.get(path)
        except NoNodeError:
            return None
        finally:
            client.stop()
            client.close()
        return dict(json.loads(data))

    return await asyncio.to_thread(read)


async def test_membership_appears_tracks_sessions_survives_expiry_and_leaves(
    make_sync_node: SyncNodeFactory, sync_client: SyncClientFactory, zk_hosts: str
) -> None:
    node = await make_sync_node(region="eu-west")
    path = node.member_path
    assert path == f"/syncline/sync/members/eu-west/{node.identifier}"
    assert await _zk_get(zk_hosts, path) == {
        "address": node.address,
        "region": "eu-west",
        "sessions": 0,
    }

    client = await sync_client(node.address)
    await client.subscribe(0, "bank:counter", {"name": "m"})
    await client.wait_value(0, 0.0)

    async def sessions_published(count: int) -> bool:
        member = await _zk_get(zk_hosts, path)
        return member is not None and member["sessions"] == count

    await assert_eventually(lambda: sessions_published(1), what="sessions == 1 in ZooKeeper")

    # A lost ZooKeeper session takes the ephemeral node with it; the node registers again.
    assert node._zk is not None
    await asyncio.to_thread(expire_zk_session, node._zk.client)
    await assert_eventually(
        lambda: sessions_published(1), timeout_seconds=15, what="re-registration after expiry"
    )
    assert node.registered

    await client.close()
    await assert_eventually(lambda: sessions_published(0), what="sessions == 0 in ZooKeeper")
    await node.close()
    assert await _zk_get(zk_hosts, path) is None


async def test_health_readiness_and_shutdown_ends_sessions_unavailable(
    make_sync_node: SyncNodeFactory, sync_client: SyncClientFactory
) -> None:
    node = await make_sync_node(http_port=0)
    async with grpc.aio.insecure_channel(node.address) as channel:
        health = await pb_grpc.HealthStub(channel).Check(pb.HealthRequest(), timeout=5)
    assert health.status == pb.HealthResponse.SERVING
    assert health.role == "sync"
    assert health.last_ts == node.manager.ts  # type: ignore[union-attr]
    async with aiohttp.ClientSession() as http:
        for endpoint in ("healthz", "readyz"):
            async with http.get(f"http://127.0.0.1:{node.http_port}/{endpoint}") as response:
                assert response.status == 200, endpoint
        async with http.get(f"http://127.0.0.1:{node.http_port}/readyz") as response:
            assert (await response.json())["registered"] is True

    client = await sync_client(node.address)
    await client.subscribe(0, "bank:counter", {"name": "h"})
    await client.wait_value(0, 0.0)
    await node.close()
    await client.wait_until(lambda: client.status is not None, what="the stream to end")
    assert client.status == grpc.StatusCode.UNAVAILABLE


async def test_call_answers_http_api_calls_as_the_embedded_server_does(
    make_sync_node: SyncNodeFactory,
) -> None:
    node = await make_sync_node()

    async def call(path: str, kind: str = "", args: str = "{}", **extra: str) -> Any:
        async with grpc.aio.insecure_channel(node.address) as channel:
            request = pb.CallRequest(path=path, kind=kind, args_json=args, **extra)
            response = await pb_grpc.SyncStub(channel).Call(request, timeout=10)
        return response.http_status, json.loads(response.body_json)

    status, body = await call("bank:increment", "mutation", '{"name": "call"}')
    assert (status, body["status"], body["value"]) == (200, "success", 1.0)
    status, body = await call("bank:counter", "", '{"name": "call"}')  # any kind
    assert (status, body["value"]) == (200, 1.0)
    status, body = await call("bank:counter", "mutation", '{"name": "call"}')
    assert status == 560 and "is a query, not a mutation" in body["errorMessage"]
    status, body = await call("bank:nothing_here", "query")
    assert status == 560 and "Could not find public function" in body["errorMessage"]
    status, body = await call("bank:counter", "query", "{not json")
    assert status == 400 and body["message"] == "args are not JSON"
    status, body = await call("bank:counter", "sideways")
    assert status == 400 and "unknown function kind 'sideways'" in body["message"]
    status, body = await call("bank:counter", "query", authorization="Bearer not-a-jwt")
    assert status == 401


async def test_a_fatal_protocol_error_ends_the_stream_ok_after_the_fatal_frame(
    make_sync_node: SyncNodeFactory, sync_client: SyncClientFactory
) -> None:
    node = await make_sync_node()
    client = await sync_client(node.address)
    await client.send({"type": "ModifyQuerySet", "baseVersion": 7, "newVersion": 8})
    await client.wait_until(lambda: client.status is not None, what="the stream to end")
    assert client.status == grpc.StatusCode.OK
    assert client.received[-1]["type"] == "FatalError"
    assert "modifications" in client.received[-1]["error"]
    await assert_eventually(lambda: node.session_count == 0, what="the session to be gone")


async def test_a_new_catalog_version_reruns_every_subscription(
    make_sync_node: SyncNodeFactory, sync_client: SyncClientFactory, pg_dsn: str
) -> None:
    node = await make_sync_node(poll_interval_seconds=0.05)
    client = await sync_client(node.address)
    await client.subscribe(0, "bank:counter", {"name": "c"})
    await client.wait_value(0, 0.0)
    assert node.deployments is not None and node.manager is not None
    before = node.deployments.current
    steps = node.manager.steps

    # As if the txn leader had applied a schema change: the poll notices and reloads.
    async with PostgresStorage(pg_dsn, pool_min=1) as storage:
        await storage.set_meta(CATALOG_VERSION_KEY, str(before.model.catalog_version + 1))
    await assert_eventually(
        lambda: (
            node.deployments.current.model.catalog_version  # type: ignore[union-attr]
            == before.model.catalog_version + 1
        ),
        what="the catalog reload",
    )
    await assert_eventually(
        lambda: node.manager.steps > steps,  # type: ignore[union-attr]
        what="a subscription step after the reload",
    )
    # A new model over the same deployed code: the version number is the deployed
    # code's (nothing was deployed: 0), the same on every node.
    assert node.deployments.current.model is not before.model
    assert node.deployments.current.version == before.version == 0


async def test_the_sync_service_process_serves_sessions_and_admin_keys(
    sync_process: SyncProcessFactory, sync_client: SyncClientFactory, zk_hosts: str
) -> None:
    secret = bytes(range(32))
    process = await sync_process("--region", "r1", env={"SYNCLINE_ADMIN_SECRET": secret.hex()})
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{process.http_port}/readyz") as response,
    ):
        assert response.status == 200

    client = await sync_client(process.address)
    admin_key = AdminKeys(secret).issue()
    await client.send(
        {"type": "Authenticate", "baseVersion": 0, "tokenType": "Admin", "value": admin_key}
    )
    await client.subscribe(0, "bank:counter", {"name": "p"})
    await client.wait_value(0, 0.0)
    request_id = await client.mutate("bank:increment", {"name": "p"})
    assert (await client.mutation_response(request_id))["result"] == 1.0
    await client.wait_value(0, 1.0)
    # The admin key from the shared secret was accepted (no AuthError, identity moved).
    assert not [f for f in client.received if f["type"] == "AuthError"]
    last = next(f for f in reversed(client.received) if f["type"] == "Transition")
    assert last["endVersion"]["identity"] == 1
    # Registered in its region with its address; gone once it stops.
    members = await asyncio.to_thread(_zk_children, zk_hosts, "/syncline/sync/members/r1")
    assert len(members) == 1
    member = await _zk_get(zk_hosts, f"/syncline/sync/members/r1/{members[0]}")
    assert member is not None and member["address"] == process.address
    assert process.stop() == 0, process.log()[-3000:]
    assert await asyncio.to_thread(_zk_children, zk_hosts, "/syncline/sync/members/r1") == []


def _zk_children(zk_hosts: str, path: str) -> list[str]:
    client = KazooClient(hosts=zk_hosts)
    client.start(timeout=10)
    try:
        return list(client.get_children(path))
    except NoNodeError:
        return []
    finally:
        client.stop()
        client.close()


def test_sync_node_config_refuses_bad_knobs(tmp_path: Path) -> None:
    for bad in (
        {"region": "a/b"},
        {"region": ""},
        {"poll_interval_seconds": 0.0},
        {"admin_secret": b"short"},
    ):
        with pytest.raises(ConfigError):
            SyncConfig(app_dir=tmp_path, zk_hosts="127.0.0.1:1", **bad)
    config = SyncConfig(app_dir=tmp_path, zk_hosts="127.0.0.1:1", admin_secret=bytes(32))
    assert "admin_secret" not in repr(config)
    assert SyncNode(config, PostgresStorage("host=127.0.0.1 port=1")).address == "127.0.0.1:0"
