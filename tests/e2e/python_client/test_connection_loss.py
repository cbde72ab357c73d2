"""syncline.client.Client when connections drop, replies are lost and the server dies.

A TCP proxy between client and server loses replies and cuts connections on demand;
the restart tests run ``syncline dev`` as a subprocess, kill it with SIGKILL and start
it again on the same port and data directory."""

from __future__ import annotations

import asyncio

import pytest

from syncline.client import ConnectionLostError
from syncline.devservers import FaultProxy
from syncline.server import EmbeddedServer
from tests.e2e.python_client.support import (
    ClientFactory,
    DevProcess,
    next_value,
    ready_value,
)
from tests.fixtures.infra import assert_eventually as eventually

pytestmark = pytest.mark.e2e


# -- connection loss -------------------------------------------------------------------


async def test_resent_mutation_applies_once_when_its_reply_is_lost(
    server: EmbeddedServer, proxy: FaultProxy, connect: ClientFactory
) -> None:
    client = await connect(f"http://{proxy.address}")
    observer = await connect(server.url)
    async with client.subscribe("counter:get", {"name": "lost"}) as subscription:
        assert await next_value(subscription) == 0
        proxy.drop = "downstream"
        pending = asyncio.create_task(
            client.mutation("counter:increment", {"name": "lost"}), name="lost-reply-mutation"
        )

        async def committed() -> bool:
            value: int = await observer.query("counter:get", {"name": "lost"})
            return value == 1

        await eventually(committed, what="the mutation to commit")
        assert not pending.done()
        proxy.heal()
        proxy.reset()
        # Resent with the same request id after the reconnect: answered, not re-applied.
        assert await asyncio.wait_for(pending, 5.0) == 1
        assert ready_value(subscription) == 1
        assert await observer.query("counter:get", {"name": "lost"}) == 1
        assert await client.mutation("counter:increment", {"name": "lost"}) == 2


async def test_action_in_flight_fails_when_the_connection_drops(
    server: EmbeddedServer, proxy: FaultProxy, connect: ClientFactory
) -> None:
    client = await connect(f"http://{proxy.address}")
    slow = asyncio.create_task(client.action("errors:slow", {"seconds": 5.0}), name="slow-action")
    await eventually(lambda: bool(client._requests), what="the action to be sent")
    proxy.reset()
    with pytest.raises(ConnectionLostError, match="errors:slow"):
        await asyncio.wait_for(slow, 5.0)
    # The client reconnected and works.
    assert await client.action("errors:slow", {"seconds": 0.0}) == "done"


async def test_subscription_survives_server_kill_and_restart(
    dev_process: DevProcess, connect: ClientFactory
) -> None:
    client = await connect(dev_process.url)
    async with client.subscribe("counter:get", {"name": "restart"}) as subscription:
        assert await next_value(subscription) == 0
        assert await client.mutation("counter:increment", {"name": "restart"}) == 1
        assert ready_value(subscription) == 1
        dev_process.kill()
        await eventually(lambda: not client.connected, what="the client to notice the kill")
        await dev_process.start()
        await eventually(lambda: client.connected, what="the client to reconnect")
        other = await connect(dev_process.url)
        assert await other.mutation("counter:increment", {"name": "restart"}) == 2
        # The re-added query's unchanged value 1 is not yielded again.
        assert await next_value(subscription) == 2


async def test_mutation_while_server_is_down_applies_once(
    dev_process: DevProcess, connect: ClientFactory
) -> None:
    client = await connect(dev_process.url)
    assert await client.mutation("counter:increment", {"name": "down"}) == 1
    dev_process.kill()
    await eventually(lambda: not client.connected, what="the client to notice the kill")
    pending = asyncio.create_task(
        client.mutation("counter:increment", {"name": "down", "by": 10}), name="offline-mutation"
    )
    await asyncio.sleep(0)
    assert not pending.done()
    await dev_process.start()
    assert await asyncio.wait_for(pending, 5.0) == 11
    assert await client.query("counter:get", {"name": "down"}) == 11
    other = await connect(dev_process.url)
    assert await other.query("counter:get", {"name": "down"}) == 11


async def test_more_mutations_than_the_server_queues_at_once(
    server: EmbeddedServer, connect: ClientFactory
) -> None:
    # The server ends a session with over 1024 queued mutations; the client's window
    # keeps it under that, and mutations still apply in the order they were made.
    client = await connect(server.url)
    results = await asyncio.gather(
        *(client.mutation("counter:increment", {"name": "bulk"}) for _ in range(1100))
    )
    assert results == list(range(1, 1101))
    assert client._connection_count == 1, "the server dropped the session"
