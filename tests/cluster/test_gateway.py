"""The gateway in front of sync nodes: official clients, HTTP calls, sessions moved off a
killed sync node without a broken version chain or a lost or doubled mutation."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from typing import Any

import aiohttp
import grpc
import pytest

from syncline.auth import AdminKeys
from syncline.cluster import Gateway
from syncline.cluster._members import Member, rendezvous_pick
from syncline.devservers import LocalPostgres
from syncline.sync import decode_ts
from tests.cluster.conftest import (
    GatewayFactory,
    SyncClient,
    SyncClientFactory,
    SyncNodeFactory,
    SyncProcessFactory,
    TxnCluster,
)
from tests.fixtures.infra import assert_eventually
from tests.fixtures.node_driver import NodeDriver

pytestmark = pytest.mark.cluster

SESSIONS = 1000


def test_rendezvous_moves_only_the_sessions_of_a_node_that_left() -> None:
    members = [Member(f"node{i}", f"127.0.0.1:{9000 + i}") for i in range(3)]
    keys = [f"session-{i}" for i in range(600)]
    before = {key: rendezvous_pick(key, members) for key in keys}
    assert min(Counter(m.identifier for m in before.values() if m).values()) > 150
    survivors = [m for m in members if m.identifier != "node1"]
    after = {key: rendezvous_pick(key, survivors) for key in keys}
    for key in keys:
        old = before[key]
        assert old is not None
        if old.identifier != "node1":
            assert after[key] == old  # only node1's sessions move
    assert rendezvous_pick("x", []) is None


async def test_official_clients_subscribe_mutate_and_see_their_writes(
    make_sync_node: SyncNodeFactory, make_gateway: GatewayFactory, node: NodeDriver
) -> None:
    await make_sync_node()
    await make_sync_node()
    gateway = await make_gateway()
    await node.call("client", name="js", url=gateway.url)
    sub = await node.call("subscribe", client="js", path="bank:counter", args={"name": "g"})
    assert await node.wait_for_update(sub, lambda v: v == 0.0) == 0.0
    assert await node.call("mutation", client="js", path="bank:increment", args={"name": "g"}) == 1
    assert await node.wait_for_update(sub, lambda v: v == 1.0) == 1.0

    # The PyPI client holds the GIL while it waits, so it runs in its own process.
    script = (
        "import sys; from convex import ConvexClient; c = ConvexClient(sys.argv[1]); "
        "c.mutation('bank:increment', {'name': 'g'}); "
        "print(c.query('bank:counter', {'name': 'g'}))"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, gateway.url, stdout=asyncio.subprocess.PIPE
    )
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0 and float(output) == 2.0
    assert await node.wait_for_update(sub, lambda v: v == 2.0) == 2.0


async def test_http_api_through_the_gateway_answers_as_embedded(
    make_sync_node: SyncNodeFactory, make_gateway: GatewayFactory
) -> None:
    await make_sync_node()
    gateway = await make_gateway()
    async with aiohttp.ClientSession() as http:

        async def post(route: str, body: Any) -> tuple[int, Any]:
            data = body if isinstance(body, str) else json.dumps(body)
            async with http.post(f"{gateway.url}/api/{route}", data=data) as response:
                return response.status, await response.json()

        status, body = await post("mutation", {"path": "bank:increment", "args": {"name": "h"}})
        assert (status, body["value"]) == (200, 1.0)
        status, body = await post("query", {"path": "bank:counter", "args": {"name": "h"}})
        assert (status, body["value"]) == (200, 1.0)
        status, body = await post("run/bank/counter", {"args": {"name": "h"}})
        assert (status, body["value"]) == (200, 1.0)
        status, body = await post("query", "{nope")
        assert status == 400 and body["message"] == "request body is not valid JSON"
        status, body = await post("query", {"path": "bank:missing", "args": {}})
        assert status == 560 and "Could not find public function" in body["errorMessage"]
        async with http.post(f"{gateway.url}/api/query_ts") as response:
            assert response.status == 200 and "ts" in await response.json()
        async with http.get(f"{gateway.url}/readyz") as response:
            assert response.status == 200
            assert len((await response.json())["sync_nodes"]) == 1


def _check_version_chain(client: SyncClient) -> None:
    """Every Transition starts where the previous one ended; ts never goes back."""
    end: dict[str, Any] = {"querySet": 0, "identity": 0, "ts": None}
    last_ts = 0
    for frame in client.received:
        if frame["type"] != "Transition":
            continue
        start = frame["startVersion"]
        assert (start["querySet"], start["identity"]) == (end["querySet"], end["identity"])
        if end["ts"] is not None:
            assert start["ts"] == end["ts"]
        end = frame["endVersion"]
        ts = decode_ts(end["ts"], "ts")
        assert ts >= last_ts
        last_ts = ts


async def test_sessions_move_off_a_killed_sync_node_without_losing_anything(
    sync_process: SyncProcessFactory, make_gateway: GatewayFactory, sync_client: SyncClientFactory
) -> None:
    nodes = [await sync_process(), await sync_process()]
    gateway = await make_gateway()
    await assert_eventually(lambda: len(gateway.members.members) == 2, what="both sync nodes")
    address = f"127.0.0.1:{gateway.grpc_port}"
    channel = grpc.aio.insecure_channel(address)  # 1,000 sessions over one connection
    clients = [SyncClient(address, channel=channel) for _ in range(SESSIONS)]
    await asyncio.gather(*(client.connect() for client in clients))
    await asyncio.gather(
        *(c.subscribe(0, "bank:counter", {"name": f"k{i % 4}"}) for i, c in enumerate(clients))
    )
    for client in clients:
        await client.wait_value(0, 0.0, timeout=60)
    serving = Counter(session.address for session in gateway.sessions)
    assert len(serving) == 2, f"sessions were not spread over both nodes: {serving}"
    victim = next(n for n in nodes if n.address in serving)
    on_victim = [c for c, s in _sessions_by_client(gateway, clients) if s == victim.address]
    assert on_victim

    victim.kill()
    killed = time.monotonic()
    await assert_eventually(
        lambda: all(s.address != victim.address for s in gateway.sessions),
        what="every session to leave the killed node",
    )
    print(f"sessions moved off the killed sync node in {time.monotonic() - killed:.3f} s")
    # Sessions of the dead node mutate at once: each mutation applies exactly once.
    request_ids = [
        await client.mutate("bank:record", {"key": f"moved-{i}"})
        for i, client in enumerate(on_victim)
    ]
    for client, request_id in zip(on_victim, request_ids, strict=True):
        response = await client.mutation_response(request_id, timeout=60)
        assert response["success"] is True
    survivor = next(n for n in nodes if n is not victim)
    writer = await sync_client(survivor.address)
    for key in range(4):
        await client_mutate_and_wait(writer, f"k{key}")
    for client in clients:  # every final result equals a fresh read
        await client.wait_value(0, 1.0, timeout=60)
        _check_version_chain(client)
        responses = [f for f in client.received if f["type"] == "MutationResponse"]
        assert len({f["requestId"] for f in responses}) == len(responses)
    watcher = await sync_client(survivor.address)
    await watcher.subscribe(0, "bank:event_keys", {})
    expected = sorted(f"moved-{i}" for i in range(len(on_victim)))
    await watcher.wait_value(0, expected, timeout=30)  # each exactly once
    assert all(session.address == survivor.address for session in gateway.sessions)
    assert sum(session.moves for session in gateway.sessions) >= len(on_victim)
    await asyncio.gather(*(client.close() for client in clients))
    await channel.close()


async def client_mutate_and_wait(client: SyncClient, name: str) -> None:
    request_id = await client.mutate("bank:increment", {"name": name})
    assert (await client.mutation_response(request_id))["success"] is True


def _sessions_by_client(
    gateway: Gateway, clients: list[SyncClient]
) -> list[tuple[SyncClient, str]]:
    by_session_id = {session.session_id: session.address for session in gateway.sessions}
    return [(client, str(by_session_id[client.session_id])) for client in clients]


async def test_a_gateway_with_no_sync_node_closes_sessions_with_a_reason(
    make_sync_node: SyncNodeFactory, make_gateway: GatewayFactory, sync_client: SyncClientFactory
) -> None:
    sync = await make_sync_node()
    gateway = await make_gateway(failover_timeout_seconds=1.0)
    await sync.close()
    await assert_eventually(lambda: not gateway.members.members, what="the member to leave")
    client = await sync_client(f"127.0.0.1:{gateway.grpc_port}")
    await client.wait_until(lambda: client.status is not None, what="the stream to end")
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{gateway.url}/api/query", json={"path": "bank:counter", "args": {"name": "x"}}
        ) as response:
            assert response.status == 503
            assert "no sync node of region 'local'" in (await response.json())["message"]
        async with http.get(f"{gateway.url}/readyz") as response:
            assert response.status == 503


async def test_a_moved_session_keeps_its_identity_and_its_version_chain(
    sync_process: SyncProcessFactory, make_gateway: GatewayFactory, sync_client: SyncClientFactory
) -> None:
    secret = bytes(range(32))
    env = {"SYNCLINE_ADMIN_SECRET": secret.hex()}
    nodes = [await sync_process(env=env), await sync_process(env=env)]
    gateway = await make_gateway()
    await assert_eventually(lambda: len(gateway.members.members) == 2, what="both sync nodes")
    client = await sync_client(f"127.0.0.1:{gateway.grpc_port}")
    admin_key = AdminKeys(secret).issue()
    authenticate = {"type": "Authenticate", "tokenType": "Admin", "value": admin_key}
    await client.send({**authenticate, "baseVersion": 0})
    await client.subscribe(0, "bank:counter", {"name": "who"})
    await client.wait_value(0, 0.0)
    (session,) = gateway.sessions
    victim = next(n for n in nodes if n.address == session.address)

    victim.kill()
    await assert_eventually(lambda: session.moves == 1, what="the session to move")
    # The new node holds identity version 1, so the next Authenticate builds on it.
    await client.send({**authenticate, "baseVersion": 1})
    await client_mutate_and_wait(client, "who")
    await client.wait_value(0, 1.0)
    await client.wait_until(
        lambda: any(
            f["type"] == "Transition" and f["endVersion"]["identity"] == 2 for f in client.received
        ),
        what="identity version 2",
    )
    assert not [f for f in client.received if f["type"] in ("AuthError", "FatalError")]
    _check_version_chain(client)


async def test_clients_reconnect_and_resume_after_a_gateway_restart(
    make_sync_node: SyncNodeFactory, make_gateway: GatewayFactory, node: NodeDriver
) -> None:
    await make_sync_node()
    first = await make_gateway()
    url = first.url
    await node.call("client", name="js", url=url)
    sub = await node.call("subscribe", client="js", path="bank:counter", args={"name": "r"})
    assert await node.wait_for_update(sub, lambda v: v == 0.0) == 0.0

    await first.close()
    second = await make_gateway(port=first.port)
    assert second.url == url
    # The npm client reconnects by itself, replays its query set, and carries on.
    assert await node.call("mutation", client="js", path="bank:increment", args={"name": "r"}) == 1
    assert await node.wait_for_update(sub, lambda v: v == 1.0, timeout=30) == 1.0
    await assert_eventually(
        lambda: len(second.sessions) == 1, what="the session on the new gateway"
    )


async def test_subscriptions_through_the_gateway_resume_after_a_postgres_restart(
    make_sync_node: SyncNodeFactory,
    make_gateway: GatewayFactory,
    sync_client: SyncClientFactory,
    postgres_server: LocalPostgres,
    txn_cluster: TxnCluster,
) -> None:
    await make_sync_node()
    await make_sync_node()
    gateway = await make_gateway()
    address = f"127.0.0.1:{gateway.grpc_port}"
    clients = [await sync_client(address) for _ in range(10)]
    for client in clients:
        await client.subscribe(0, "bank:counter", {"name": "pg"})
    for client in clients:
        await client.wait_value(0, 0.0)

    await postgres_server.restart(mode="immediate")
    await txn_cluster.leader(timeout=60)
    # The mutation waits out the restart (retries), then every subscriber sees it.
    request_id = await clients[0].mutate("bank:increment", {"name": "pg"})
    assert (await clients[0].mutation_response(request_id, timeout=60))["success"] is True
    for client in clients:
        await client.wait_value(0, 1.0, timeout=30)
        _check_version_chain(client)
