"""Presence rooms in embedded mode through the native client and HTTP: members,
state changes, leaves and expiry, broadcast, authorization, and bad input."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from syncline.client import Client, FunctionError
from syncline.devservers import FaultProxy
from syncline.presence import PresenceConfig
from syncline.server import EmbeddedConfig, EmbeddedServer
from tests.e2e.python_client.support import until
from tests.fixtures.jwt_issuer import JwtIssuer
from tests.fixtures.servers import TEST_AUDIENCE, TEST_ISSUER

pytestmark = pytest.mark.e2e

TTL_SECONDS = 1.0


@pytest.fixture
async def server(basic_app: Path, tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    config = EmbeddedConfig(
        app_dir=basic_app,
        data_dir=tmp_path / "data",
        port=0,
        presence=PresenceConfig(member_ttl_seconds=TTL_SECONDS, messages_kept=5),
    )
    async with EmbeddedServer(config) as embedded:
        yield embedded


@pytest.fixture
async def clients(server: EmbeddedServer) -> AsyncIterator[list[Client]]:
    opened = [Client(server.url) for _ in range(3)]
    for client in opened:
        await client.connect()
    yield opened
    for client in opened:
        await client.close()


def _states(members: list[dict[str, Any]]) -> dict[str, Any]:
    return {m["member"]: m["state"] for m in members}


async def test_members_see_joins_updates_and_leaves(clients: list[Client]) -> None:
    alice, bob, watcher = clients
    members = watcher.subscribe("rooms:members", {"room": "lobby"})
    assert await until(members, lambda v: v == []) == []
    a = await alice.mutation("rooms:join", {"room": "lobby", "state": {"cursor": [1.0, 2.0]}})
    b = await bob.mutation("rooms:join", {"room": "lobby", "state": {"status": "typing"}})
    assert a != b
    seen = await until(members, lambda v: len(v) == 2)
    assert _states(seen) == {a: {"cursor": [1.0, 2.0]}, b: {"status": "typing"}}
    assert all(isinstance(m["updatedAt"], float) for m in seen)
    # Joining again replaces the state: high-frequency updates are just that.
    for x in range(20):
        await alice.mutation("rooms:join", {"room": "lobby", "state": {"cursor": [float(x), 0.0]}})
    await until(members, lambda v: _states(v).get(a) == {"cursor": [19.0, 0.0]})
    await bob.mutation("rooms:leave", {"room": "lobby"})
    assert _states(await until(members, lambda v: len(v) == 1)) == {a: {"cursor": [19.0, 0.0]}}


async def test_a_closed_session_leaves_at_once(server: EmbeddedServer) -> None:
    async with Client(server.url) as watcher, Client(server.url) as leaver:
        members = watcher.subscribe("rooms:members", {"room": "r"})
        await leaver.mutation("rooms:join", {"room": "r", "state": "here"})
        await until(members, lambda v: len(v) == 1)
        await leaver.close()
        # Well inside the expiry time: the leave comes from the closed session.
        assert await until(members, lambda v: v == [], timeout_seconds=TTL_SECONDS / 2) == []


async def test_a_member_nobody_refreshes_expires(server: EmbeddedServer) -> None:
    """A member whose session died without a word (its node crashed) is removed once
    its deadline passes."""
    from syncline.presence._model import Join, member_entry

    async with Client(server.url) as watcher:
        members = watcher.subscribe("rooms:members", {"room": "r"})
        await until(members, lambda v: v == [])
        await server.presence.apply([Join("r", "ghost", member_entry('"boo"', 0))])
        await until(members, lambda v: _states(v) == {"ghost": "boo"})
        await until(members, lambda v: v == [], timeout_seconds=TTL_SECONDS * 3)


async def test_broadcast_reaches_subscribers_and_keeps_recent_messages(
    clients: list[Client],
) -> None:
    alice, _, watcher = clients
    messages = watcher.subscribe("rooms:messages", {"room": "chat"})
    assert await until(messages, lambda v: v == []) == []
    for n in range(7):
        await alice.mutation("rooms:say", {"room": "chat", "text": f"m{n}"})
    last = await until(messages, lambda v: len(v) == 5 and v[-1]["body"]["text"] == "m6")
    assert [m["body"]["text"] for m in last] == ["m2", "m3", "m4", "m5", "m6"]
    assert len({m["id"] for m in last}) == 5


async def test_scheduled_mutations_broadcast_once_they_commit(clients: list[Client]) -> None:
    alice, _, watcher = clients
    messages = watcher.subscribe("rooms:messages", {"room": "news"})
    assert await until(messages, lambda v: v == []) == []
    await alice.mutation("rooms:announce_later", {"room": "news", "text": "later"})
    (message,) = await until(messages, lambda v: len(v) == 1)
    assert (message["member"], message["body"]) == (None, {"text": "later", "from": "scheduler"})


async def test_a_failed_mutation_joins_nothing_and_nothing_is_committed(
    server: EmbeddedServer, clients: list[Client]
) -> None:
    alice, _, watcher = clients
    members = watcher.subscribe("rooms:members", {"room": "r"})
    await until(members, lambda v: v == [])
    ts_before = await server.storage.max_ts()
    with pytest.raises(FunctionError):
        await alice.mutation("rooms:join_then_fail", {"room": "r", "state": 1.0})
    await alice.mutation("rooms:join", {"room": "r", "state": 2.0})
    assert [m["state"] for m in await until(members, lambda v: len(v) == 1)] == [2.0]
    # Presence costs no database write.
    assert await server.storage.max_ts() == ts_before


async def test_functions_decide_who_may_join(server: EmbeddedServer, jwt_issuer: JwtIssuer) -> None:
    async with Client(server.url) as anonymous, Client(server.url) as staff:
        with pytest.raises(FunctionError) as refused:
            await anonymous.mutation("rooms:join", {"room": "staff:ops", "state": None})
        assert refused.value.data == {"code": "FORBIDDEN", "room": "staff:ops"}
        await staff.set_auth(jwt_issuer.token("s1", issuer=TEST_ISSUER, audience=TEST_AUDIENCE))
        await staff.mutation("rooms:join", {"room": "staff:ops", "state": "on call"})
        assert [m["state"] for m in await staff.query("rooms:members", {"room": "staff:ops"})] == [
            "on call"
        ]
        with pytest.raises(FunctionError):
            await anonymous.query("rooms:members", {"room": "staff:ops"})


async def test_bad_presence_calls_fail_with_named_errors(
    server: EmbeddedServer, clients: list[Client]
) -> None:
    alice, _, _ = clients
    cases = {
        "x" * 300: "presence room name is 300 characters; the limit is 256",
        "": "a presence room is a non-empty string",
    }
    for room, message in cases.items():
        with pytest.raises(FunctionError, match=message):
            await alice.mutation("rooms:join", {"room": room, "state": None})
    with pytest.raises(FunctionError, match=r"presence state: value is \d+ bytes, more than"):
        await alice.mutation("rooms:join", {"room": "r", "state": "y" * 70_000})
    assert await alice.query("rooms:members", {"room": "r"}) == []
    # Over HTTP there is no session to be a member: only broadcast works.
    async with aiohttp.ClientSession() as http:
        response = await http.post(
            f"{server.url}/api/mutation",
            json={"path": "rooms:join", "args": {"room": "r", "state": 1}, "format": "json"},
        )
        body = await response.json()
        assert body["status"] == "error"
        assert "needs a client session" in body["errorMessage"]
        response = await http.post(
            f"{server.url}/api/mutation",
            json={"path": "rooms:say", "args": {"room": "r", "text": "hi"}, "format": "json"},
        )
        assert (await response.json())["status"] == "success"
    assert [m["member"] for m in await alice.query("rooms:messages", {"room": "r"})] == [None]


async def test_native_presence_sends_latest_state_and_rejoins_after_reconnect(
    server: EmbeddedServer,
) -> None:
    async with FaultProxy(server.port) as proxy, Client(server.url) as watcher:
        mover = Client(f"http://127.0.0.1:{proxy.port}", reconnect_backoff_seconds=(0.02, 0.1))
        await mover.connect()
        try:
            members = watcher.subscribe("rooms:members", {"room": "map"})
            presence = mover.presence("map", join="rooms:join", leave="rooms:leave")
            member = await presence.join({"x": 0.0})
            await until(members, lambda v: _states(v) == {member: {"x": 0.0}})
            # A burst faster than round trips: only the newest state has to arrive.
            for x in range(1, 200):
                presence.update({"x": float(x)})
            await presence.flush()
            await until(members, lambda v: _states(v) == {member: {"x": 199.0}})
            # The connection drops: the server lets the member go, the client rejoins.
            proxy.hold = True
            proxy.reset()
            await until(members, lambda v: v == [])
            proxy.heal()
            await until(members, lambda v: _states(v) == {member: {"x": 199.0}}, 10)
            with pytest.raises(FunctionError, match="FORBIDDEN"):
                await mover.presence("staff:x", join="rooms:join").join("no")
            await presence.leave()
            await until(members, lambda v: v == [])
        finally:
            await mover.close()
