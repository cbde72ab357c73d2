"""``syncline deploy`` against a cluster: a new version with a new index goes live while
clients are subscribed, subscriptions re-run on the new code, a refused version changes
nothing, and a new txn leader keeps the deployed code."""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from syncline.auth import AdminKeys
from syncline.cluster import Gateway
from tests.cluster.conftest import (
    BANK,
    GatewayFactory,
    SyncClientFactory,
    SyncNodeFactory,
    TxnCluster,
)
from tests.fixtures.jwt_issuer import JwtIssuer
from tests.fixtures.servers import TEST_AUDIENCE, TEST_ISSUER

pytestmark = pytest.mark.cluster

SECRET = bytes(range(32))
V2_SCHEMA_EVENTS = '"events": define_table({"key": v.string()}).index("by_key", ["key"]),'
V2_FUNCTIONS = """

@query(args={"key": v.string()})
async def events_with_key(ctx, key):
    found = ctx.db.query("events").with_index("by_key", lambda q: q.eq("key", key))
    return [e["key"] for e in await found.collect()]
"""


def version_two(directory: Path) -> Path:
    """The bank app with an index on events.key, a query using it, and counters x10."""
    shutil.copytree(BANK, directory)
    schema = (directory / "schema.py").read_text()
    schema = schema.replace('"events": define_table({"key": v.string()}),', V2_SCHEMA_EVENTS)
    (directory / "schema.py").write_text(schema)
    bank = (directory / "bank.py").read_text()
    bank = bank.replace(
        'return doc["value"] if doc else 0.0', 'return doc["value"] * 10 if doc else 0.0'
    )
    (directory / "bank.py").write_text(bank + V2_FUNCTIONS)
    return directory


async def deploy(
    app_dir: Path, gateway: Gateway, *flags: str, key: str | None = None
) -> tuple[int, str, str]:
    admin_key = key if key is not None else AdminKeys(SECRET).issue()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "syncline",
        "deploy",
        str(app_dir),
        "--url",
        gateway.url,
        "--admin-key",
        admin_key,
        *flags,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def query(
    gateway: Gateway, path: str, args: dict[str, object]
) -> tuple[int, dict[str, object]]:
    body = {"path": path, "args": args}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{gateway.url}/api/query", json=body) as response,
    ):
        return response.status, await response.json()


async def test_a_new_version_goes_live_under_subscribed_clients_and_survives_failover(
    make_sync_node: SyncNodeFactory,
    make_gateway: GatewayFactory,
    sync_client: SyncClientFactory,
    txn_cluster: TxnCluster,
    tmp_path: Path,
) -> None:
    for _ in range(2):
        await make_sync_node(admin_secret=SECRET)
    gateway = await make_gateway()
    clients = [await sync_client(f"127.0.0.1:{gateway.grpc_port}") for _ in range(6)]
    for client in clients:
        await client.subscribe(0, "bank:counter", {"name": "d"})
    writer = clients[0]
    request_id = await writer.mutate("bank:increment", {"name": "d"})
    assert (await writer.mutation_response(request_id))["success"] is True
    request_id = await writer.mutate("bank:record", {"key": "before"})
    assert (await writer.mutation_response(request_id))["success"] is True
    for client in clients:
        await client.wait_value(0, 1.0)

    v2 = version_two(tmp_path / "v2")
    code, out, err = await deploy(v2, gateway, "--dry-run")
    assert code == 0, err
    assert "indexes added: events.by_key" in out
    assert "functions added: bank:events_with_key" in out
    assert "files changed: bank.py, schema.py" in out
    assert "would deploy version 1" in out
    status, body = await query(gateway, "bank:events_with_key", {"key": "before"})
    assert status == 560 and "Could not find public function" in str(body["errorMessage"])

    code, out, err = await deploy(v2, gateway)
    assert code == 0, err
    assert "deployed version 1" in out
    # Every subscription re-ran on the new code, on both sync nodes.
    for client in clients:
        await client.wait_value(0, 10.0, timeout=20)
    status, body = await query(gateway, "bank:events_with_key", {"key": "before"})
    assert (status, body["value"]) == (200, ["before"])  # the backfilled index
    # The admin dashboard's Deployment view: the same version on every node, and
    # when it went live.
    headers = {"Authorization": f"Convex {AdminKeys(SECRET).issue()}"}
    body = {"path": "_system/deployment:describe", "args": {}, "format": "json"}
    async with aiohttp.ClientSession() as http:
        for _ in range(4):  # requests spread over both sync nodes
            async with http.post(f"{gateway.url}/api/query", json=body, headers=headers) as answer:
                described = (await answer.json())["value"]
            assert described["version"] == 1 and described["mode"] == "cluster"
            [live] = described["versions"]
            assert live["version"] == 1 and live["functions"] == len(described["functions"])

    # A new txn leader applies the deployed version, not the one it was started with
    # (which has no by_key index: applying it would drop the index).
    leader = await txn_cluster.leader()
    leader.signal(signal.SIGKILL)
    await txn_cluster.leader(exclude=leader)
    request_id = await writer.mutate("bank:record", {"key": "after"})
    assert (await writer.mutation_response(request_id, timeout=30))["success"] is True
    status, body = await query(gateway, "bank:events_with_key", {"key": "after"})
    assert (status, body["value"]) == (200, ["after"])


async def test_a_refused_deploy_names_the_problem_and_changes_nothing(
    make_sync_node: SyncNodeFactory, make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    await make_sync_node(admin_secret=SECRET)
    gateway = await make_gateway()
    v2 = version_two(tmp_path / "v2")

    code, _, err = await deploy(v2, gateway, key="syncline-admin|x|" + "0" * 64)
    assert code == 1 and "HTTP 401" in err
    code, _, err = await deploy(v2, gateway, key=AdminKeys(SECRET).issue("ops", ["run"]))
    assert code == 1 and "HTTP 403" in err and "deploy scope" in err

    broken = version_two(tmp_path / "broken")
    (broken / "bank.py").write_text((broken / "bank.py").read_text() + "\ndef oops(:\n")
    code, _, err = await deploy(broken, gateway)
    assert code == 1 and "HTTP 400" in err and "bank.py" in err and "SyntaxError" in err

    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{gateway.url}/api/mutation", json={"path": "bank:record", "args": {"key": "x"}}
        ) as r,
    ):
        assert r.status == 200
    violating = version_two(tmp_path / "violating")
    schema = (
        (violating / "schema.py").read_text().replace('{"key": v.string()}', '{"key": v.float64()}')
    )
    (violating / "schema.py").write_text(schema)
    code, _, err = await deploy(violating, gateway)
    assert code == 1 and "HTTP 400" in err and "events" in err

    status, body = await query(gateway, "bank:events_with_key", {"key": "x"})
    assert status == 560  # nothing was deployed
    status, body = await query(gateway, "bank:event_keys", {})
    assert (status, body["value"]) == (200, ["x"])
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{gateway.url}/api/deploy", data="{}") as response,
    ):
        assert response.status == 400 and "bundle" in (await response.json())["message"]


async def test_a_deployed_auth_config_checks_tokens_without_a_restart(
    make_sync_node: SyncNodeFactory, make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    await make_sync_node(admin_secret=SECRET)
    gateway = await make_gateway()
    issuer = JwtIssuer("RS256")
    token = issuer.token("ada", issuer=TEST_ISSUER, audience=TEST_AUDIENCE)

    async def whoami() -> tuple[int, dict[str, object]]:
        body = {"path": "whoami:me", "args": {}}
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{gateway.url}/api/query", json=body, headers=headers) as response,
        ):
            return response.status, await response.json()

    v2 = version_two(tmp_path / "v2")
    (v2 / "whoami.py").write_text(
        "from syncline import query\n\n\n@query\nasync def me(ctx):\n"
        "    identity = await ctx.auth.get_user_identity()\n"
        "    return identity and identity['subject']\n"
    )
    status, _ = await whoami()
    assert status == 401  # no provider knows this issuer yet
    (v2 / "auth_config.py").write_text(
        "providers = [{"
        f"'type': 'customJwt', 'issuer': {TEST_ISSUER!r}, 'jwks': {issuer.jwks_data_uri()!r}, "
        f"'algorithm': 'RS256', 'applicationID': {TEST_AUDIENCE!r}"
        "}]\n"
    )
    code, _, err = await deploy(v2, gateway)
    assert code == 0, err
    status, body = await whoami()
    assert (status, body.get("value")) == (200, "ada")


async def test_a_revoked_admin_key_cannot_deploy(
    make_sync_node: SyncNodeFactory, make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    revoked = tmp_path / "revoked_admin_keys"
    await make_sync_node(admin_secret=SECRET, revoked_admin_keys_file=revoked)
    gateway = await make_gateway()
    v2 = version_two(tmp_path / "v2")
    key = AdminKeys(SECRET).issue("ci")
    code, _, err = await deploy(v2, gateway, "--dry-run", key=key)
    assert code == 0, err
    revoked.write_text("ci\n")
    code, _, err = await deploy(v2, gateway, "--dry-run", key=key)
    assert code == 1 and "HTTP 401" in err
