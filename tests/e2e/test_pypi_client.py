"""The official PyPI ``convex`` client (Rust-backed) against ``syncline dev``."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from convex import ConvexClient, ConvexError, ConvexInt64

from tests.fixtures.dev_server import DevServer
from tests.fixtures.jwt_issuer import JwtIssuer
from tests.fixtures.servers import TEST_AUDIENCE, TEST_ISSUER

pytestmark = pytest.mark.e2e


def _next_value(subscription: Any, predicate: Any, results: list[Any]) -> None:
    for value in subscription:
        results.append(value)
        if predicate(value):
            return


async def _until(subscription: Any, predicate: Any, timeout: float = 10.0) -> Any:
    results: list[Any] = []
    thread = threading.Thread(
        target=_next_value, args=(subscription, predicate, results), daemon=True
    )
    thread.start()
    await asyncio.wait_for(asyncio.to_thread(thread.join), timeout)
    return results[-1]


async def test_query_mutation_and_subscription(dev_server: DevServer) -> None:
    client = ConvexClient(dev_server.url)
    other = ConvexClient(dev_server.url)
    subscription = client.subscribe("counters:get", {"name": "py"})
    assert await _until(subscription, lambda v: v == 0.0) == 0.0
    await asyncio.to_thread(other.mutation, "counters:increment", {"name": "py", "by": 3.0})
    assert await _until(subscription, lambda v: v == 3.0) == 3.0
    assert await asyncio.to_thread(client.query, "counters:get", {"name": "py"}) == 3.0
    subscription.unsubscribe()


async def test_values_round_trip_exactly(dev_server: DevServer) -> None:
    client = ConvexClient(dev_server.url)
    typed = await asyncio.to_thread(
        client.query,
        "values:typed",
        {"n": ConvexInt64(2**62), "f": 0.5, "b": b"\x00\xff", "s": "é"},
    )
    assert typed == {"n": 2**62 + 1, "f": 1.0, "b": b"\x00\xff!", "s": "É"}
    value = {"list": [1.5, None, True, "x"], "bytes": b"\x01\x02", "int": ConvexInt64(-(2**63))}
    echoed = await asyncio.to_thread(client.mutation, "values:store", {"payload": value})
    assert echoed == {"list": [1.5, None, True, "x"], "bytes": b"\x01\x02", "int": -(2**63)}


async def test_errors(dev_server: DevServer) -> None:
    client = ConvexClient(dev_server.url)
    with pytest.raises(ConvexError) as app_error:
        await asyncio.to_thread(client.query, "errors:app_error")
    assert app_error.value.data == {"code": "NOPE", "detail": 1.0}
    note_id = await asyncio.to_thread(client.mutation, "notes:add", {"author": "p", "body": "b"})
    await asyncio.to_thread(client.mutation, "notes:remove", {"id": note_id})
    with pytest.raises(ConvexError) as mutation_error:
        await asyncio.to_thread(client.mutation, "notes:remove", {"id": note_id})
    assert mutation_error.value.data == {"code": "NOT_FOUND", "id": note_id}
    with pytest.raises(Exception, match=r"Could not find public function for 'errors:secret'"):
        await asyncio.to_thread(client.query, "errors:secret")
    with pytest.raises(Exception, match="Server Error") as crash:
        await asyncio.to_thread(client.mutation, "errors:crash")
    assert "passwd" not in str(crash.value)
    with pytest.raises(Exception, match=r"args\.body: expected string"):
        await asyncio.to_thread(client.mutation, "notes:add", {"author": "a", "body": 1.0})


async def test_auth(dev_server: DevServer, jwt_issuer: JwtIssuer) -> None:
    client = ConvexClient(dev_server.url)
    assert await asyncio.to_thread(client.query, "whoami:me") is None
    client.set_auth(jwt_issuer.token("py-user", issuer=TEST_ISSUER, audience=TEST_AUDIENCE))
    me = await asyncio.to_thread(client.query, "whoami:me")
    assert me == {"tokenIdentifier": f"{TEST_ISSUER}|py-user", "name": None}
    client.clear_auth()
    assert await asyncio.to_thread(client.query, "whoami:me") is None


async def test_reconnect_after_restart(dev_server: DevServer) -> None:
    client = ConvexClient(dev_server.url)
    subscription = client.subscribe("counters:get", {"name": "py-restart"})
    await asyncio.to_thread(client.mutation, "counters:increment", {"name": "py-restart"})
    assert await _until(subscription, lambda v: v == 1.0) == 1.0
    dev_server.kill()
    await dev_server.start()
    await asyncio.to_thread(client.mutation, "counters:increment", {"name": "py-restart"})
    assert await _until(subscription, lambda v: v == 2.0, timeout=30) == 2.0
