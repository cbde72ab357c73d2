"""The official npm ``convex`` client (Node, with ``ws``) against ``syncline dev``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.fixtures.dev_server import DevServer
from tests.fixtures.jwt_issuer import JwtIssuer
from tests.fixtures.node_driver import NodeCallError, NodeDriver
from tests.fixtures.servers import TEST_AUDIENCE, TEST_ISSUER

pytestmark = pytest.mark.e2e


async def _client(node: NodeDriver, server: DevServer, name: str, **options: Any) -> str:
    await node.call("client", name=name, url=server.url, **options)
    return name


async def test_subscription_receives_live_updates(node: NodeDriver, dev_server: DevServer) -> None:
    watcher = await _client(node, dev_server, "watcher")
    writer = await _client(node, dev_server, "writer")
    sub = await node.call("subscribe", client=watcher, path="counters:get", args={"name": "live"})
    assert await node.wait_for_update(sub, lambda v: v == 0.0) == 0.0
    await node.call("mutation", client=writer, path="counters:increment", args={"name": "live"})
    assert await node.wait_for_update(sub, lambda v: v == 1.0) == 1.0
    await node.call(
        "mutation", client=writer, path="counters:increment", args={"name": "live", "by": 41.0}
    )
    assert await node.wait_for_update(sub, lambda v: v == 42.0) == 42.0


async def test_mutation_resolves_after_own_subscription_saw_it(
    node: NodeDriver, dev_server: DevServer
) -> None:
    client = await _client(node, dev_server, "c")
    sub = await node.call(
        "subscribe", client=client, path="notes:by_author", args={"author": "ryw"}
    )
    await node.wait_for_update(sub, lambda v: v == [])
    note_id = await node.call(
        "mutation", client=client, path="notes:add", args={"author": "ryw", "body": "x"}
    )
    # The update for our own write was delivered before the mutation resolved.
    seen: list[Any] = []
    while True:
        try:
            event = await node.event(timeout=0.01)
        except TimeoutError:
            break
        if event.get("sub") == sub:
            seen.append(event["value"])
    assert seen and [n["_id"] for n in seen[-1]] == [note_id]


async def test_concurrent_increments_are_serializable(
    node: NodeDriver, dev_server: DevServer
) -> None:
    names = [await _client(node, dev_server, f"c{i}") for i in range(4)]

    async def bump(client: str) -> None:
        for _ in range(25):
            await node.call(
                "mutation", client=client, path="counters:increment", args={"name": "occ"}
            )

    await asyncio.gather(*(bump(c) for c in names))
    assert (
        await node.call("query", client=names[0], path="counters:get", args={"name": "occ"})
        == 100.0
    )


async def test_values_round_trip_exactly(node: NodeDriver, dev_server: DevServer) -> None:
    client = await _client(node, dev_server, "c")
    value = {
        "int": {"$integer": "AQAAAAAAAIA="},  # -2**63 + 1 as little-endian bytes
        "bytes": {"$bytes": "AAEC/w=="},
        "nan": {"$float": "AAAAAAAA+H8="},
        "negzero": {"$float": "AAAAAAAAAIA="},
        "float": 1.5,
        "nested": [None, True, "ü", [{"a": 1.0}]],
    }
    assert (
        await node.call("query", client=client, path="values:echo", args={"value": value}) == value
    )
    assert (
        await node.call("mutation", client=client, path="values:store", args={"payload": value})
        == value
    )
    assert (
        await node.call("action", client=client, path="values:echo_action", args={"value": value})
        == value
    )
    typed = await node.call(
        "query",
        client=client,
        path="values:typed",
        args={"n": {"$integer": "KQAAAAAAAAA="}, "f": 1.25, "b": {"$bytes": "aGk="}, "s": "abc"},
    )
    assert typed == {
        "n": {"$integer": "KgAAAAAAAAA="},
        "f": 2.5,
        "b": {"$bytes": "aGkh"},
        "s": "ABC",
    }


async def test_errors_are_clear_and_typed(node: NodeDriver, dev_server: DevServer) -> None:
    client = await _client(node, dev_server, "c")
    with pytest.raises(NodeCallError) as app_error:
        await node.call("query", client=client, path="errors:app_error")
    assert app_error.value.name == "ConvexError"
    assert app_error.value.data == {"code": "NOPE", "detail": 1.0}

    with pytest.raises(NodeCallError) as crash:
        await node.call("mutation", client=client, path="errors:crash")
    assert "Server Error" in crash.value.message
    assert "secret" not in crash.value.message and "passwd" not in crash.value.message
    assert (
        await node.call("query", client=client, path="notes:by_author", args={"author": "crash"})
        == []
    )

    with pytest.raises(NodeCallError) as wrong_type:
        await node.call(
            "mutation", client=client, path="notes:add", args={"author": 5.0, "body": "x"}
        )
    assert "args.author: expected string, got float64" in wrong_type.value.message

    with pytest.raises(NodeCallError) as unknown:
        await node.call("query", client=client, path="nope:missing")
    with pytest.raises(NodeCallError) as internal:
        await node.call("query", client=client, path="errors:secret")
    assert "Could not find public function for 'nope:missing'" in unknown.value.message
    assert "Could not find public function for 'errors:secret'" in internal.value.message

    with pytest.raises(NodeCallError) as read_only:
        await node.call("query", client=client, path="errors:write_in_query")
    assert "read-only" in read_only.value.message

    # The session survived all of that.
    assert await node.call("query", client=client, path="counters:get", args={"name": "ok"}) == 0.0


async def test_ids_of_the_wrong_table_are_rejected(node: NodeDriver, dev_server: DevServer) -> None:
    client = await _client(node, dev_server, "c")
    blob_id = await node.call("mutation", client=client, path="values:store", args={"payload": 1.0})
    assert blob_id == 1.0
    note_id = await node.call(
        "mutation", client=client, path="notes:add", args={"author": "a", "body": "b"}
    )
    assert (await node.call("query", client=client, path="notes:get", args={"id": note_id}))[
        "body"
    ] == "b"
    with pytest.raises(NodeCallError) as bad:
        await node.call("query", client=client, path="notes:get", args={"id": "not-an-id"})
    assert "args.id" in bad.value.message


async def test_admin_key_may_call_internal_functions(
    node: NodeDriver, dev_server: DevServer
) -> None:
    assert dev_server.admin_key
    admin = await _client(node, dev_server, "admin", adminKey=dev_server.admin_key)
    assert await node.call("query", client=admin, path="errors:secret") == "internal only"
    http_admin = await _client(
        node, dev_server, "http-admin", http=True, adminKey=dev_server.admin_key
    )
    assert await node.call("query", client=http_admin, path="errors:secret") == "internal only"


async def test_http_client(node: NodeDriver, dev_server: DevServer) -> None:
    http = await _client(node, dev_server, "http", http=True)
    await node.call(
        "mutation", client=http, path="counters:increment", args={"name": "h", "by": 2.0}
    )
    assert await node.call("query", client=http, path="counters:get", args={"name": "h"}) == 2.0
    with pytest.raises(NodeCallError) as app_error:
        await node.call("query", client=http, path="errors:app_error")
    assert app_error.value.data == {"code": "NOPE", "detail": 1.0}


async def test_auth_with_rs256_token_and_jwks(
    node: NodeDriver, dev_server: DevServer, jwt_issuer: JwtIssuer
) -> None:
    token = jwt_issuer.token("user-1", issuer=TEST_ISSUER, audience=TEST_AUDIENCE, name="Ada")
    authed = await _client(node, dev_server, "authed", token=token)
    me = await node.call("query", client=authed, path="whoami:me")
    assert me == {"tokenIdentifier": f"{TEST_ISSUER}|user-1", "name": "Ada"}
    http = await _client(node, dev_server, "http", http=True, token=token)
    assert await node.call("query", client=http, path="whoami:me") == me
    anonymous = await _client(node, dev_server, "anon")
    assert await node.call("query", client=anonymous, path="whoami:me") is None


async def test_invalid_token_is_refused(
    node: NodeDriver, dev_server: DevServer, jwt_issuer: JwtIssuer
) -> None:
    expired = jwt_issuer.token(
        "user-1", issuer=TEST_ISSUER, audience=TEST_AUDIENCE, expires_in_seconds=-3600
    )
    http = await _client(node, dev_server, "http", http=True, token=expired)
    with pytest.raises(NodeCallError) as refused:
        await node.call("query", client=http, path="whoami:me")
    assert "expired" in refused.value.message.lower()
    wrong_audience = jwt_issuer.token("user-1", issuer=TEST_ISSUER, audience="someone-else")
    http2 = await _client(node, dev_server, "http2", http=True, token=wrong_audience)
    with pytest.raises(NodeCallError) as refused2:
        await node.call("query", client=http2, path="whoami:me")
    assert "audience" in refused2.value.message.lower()


async def test_reconnect_after_server_restart_loses_and_duplicates_nothing(
    node: NodeDriver, dev_server: DevServer
) -> None:
    client = await _client(node, dev_server, "c")
    sub = await node.call("subscribe", client=client, path="counters:get", args={"name": "restart"})
    await node.wait_for_update(sub, lambda v: v == 0.0)
    for _ in range(5):
        await node.call(
            "mutation", client=client, path="counters:increment", args={"name": "restart"}
        )
    await node.wait_for_update(sub, lambda v: v == 5.0)
    dev_server.kill()
    # Sent while the server is down: the client queues it and resends on reconnect.
    pending = asyncio.ensure_future(
        node.call(
            "mutation",
            timeout=60,
            client=client,
            path="counters:increment",
            args={"name": "restart"},
        )
    )
    await asyncio.sleep(0.3)
    await dev_server.start()
    assert await pending == 6.0
    assert await node.wait_for_update(sub, lambda v: v == 6.0, timeout=30) == 6.0
    other = await _client(node, dev_server, "other")
    assert (
        await node.call("query", client=other, path="counters:get", args={"name": "restart"}) == 6.0
    )


async def test_every_reference_form_works_from_actions(
    node: NodeDriver, dev_server: DevServer
) -> None:
    client = await _client(node, dev_server, "c")
    result = await node.call("action", client=client, path="refs:all_forms", args={"name": "refs"})
    assert result == [0.0, 1.0, 3.0, 0.0]


async def test_scheduled_mutations_run_and_their_jobs_are_reactive(
    node: NodeDriver, dev_server: DevServer
) -> None:
    client = await _client(node, dev_server, "scheduler")
    delivered = await node.call("subscribe", client=client, path="reminders:delivered", args={})
    await node.wait_for_update(delivered, lambda v: v == [])
    soon = await node.call(
        "mutation", client=client, path="reminders:remind", args={"text": "soon", "delay": 0.2}
    )
    later = await node.call(
        "mutation", client=client, path="reminders:remind", args={"text": "later", "delay": 3600.0}
    )
    await node.wait_for_update(delivered, lambda v: v == ["soon"])
    status = await node.call("subscribe", client=client, path="reminders:status", args={"id": soon})
    await node.wait_for_update(status, lambda v: v == "success")
    await node.call("mutation", client=client, path="reminders:cancel", args={"id": later})
    canceled = await node.call(
        "subscribe", client=client, path="reminders:status", args={"id": later}
    )
    await node.wait_for_update(canceled, lambda v: v == "canceled")
