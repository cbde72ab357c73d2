"""Presence over real Redis, one per region: rooms that span regions, members that
expire when their node dies, follow their session to another node, and come back
after Redis restarts empty."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from syncline.devservers import LocalRedis
from syncline.presence import PresenceConfig, PresenceHub, RedisStore
from syncline.presence._model import Join, Leave, member_entry
from tests.fixtures.infra import assert_eventually

pytestmark = pytest.mark.cluster

TTL = 1.0
CONFIG = PresenceConfig(member_ttl_seconds=TTL)


@pytest.fixture
async def regions(tmp_path: Path) -> AsyncIterator[dict[str, LocalRedis]]:
    servers = {name: LocalRedis(tmp_path / f"redis-{name}") for name in ("east", "west")}
    for server in servers.values():
        await server.start()
    yield servers
    for server in servers.values():
        await server.stop()


class Node:
    """A sync node's presence: its region's Redis, and the other region's to read."""

    def __init__(self, regions: dict[str, LocalRedis], region: str) -> None:
        def store(name: str) -> RedisStore:
            return RedisStore(regions[name].url, name=name, member_ttl_ms=TTL * 1000)

        peers = [store(name) for name in regions if name != region]
        self.hub = PresenceHub(store(region), peers, config=CONFIG)
        self.changes: list[set[str]] = []
        self.hub.add_listener(self.changes.append)

    async def members(self, room: str) -> dict[str, object]:
        view = await self.hub.view(room, 2.0)
        return {m.member: m.to_value()["state"] for m in view.merged_members()}

    async def join(self, room: str, member: str, state: str) -> None:
        await self.hub.apply([Join(room, member, member_entry(f'"{state}"', 0))])


@pytest.fixture
async def nodes(regions: dict[str, LocalRedis]) -> AsyncIterator[dict[str, Node]]:
    made = {name: Node(regions, name) for name in ("east", "west")}
    for node in made.values():
        await node.hub.start()
    yield made
    for node in made.values():
        await node.hub.close()


async def eventually_members(node: Node, room: str, expected: dict[str, object]) -> None:
    async def matches() -> bool:
        return await node.members(room) == expected

    await assert_eventually(matches, timeout_seconds=10, what=f"members {expected}")


async def test_a_room_spans_regions(nodes: dict[str, Node]) -> None:
    east, west = nodes["east"], nodes["west"]
    for node in (east, west):
        assert await node.members("r") == {}
    east.hub.session_started("a")
    west.hub.session_started("b")
    await east.join("r", "a", "east")
    await west.join("r", "b", "west")
    for node in (east, west):
        await eventually_members(node, "r", {"a": "east", "b": "west"})
    assert any("r" in rooms for rooms in east.changes)
    # Live sessions are kept alive past the members' lifetime.
    await asyncio.sleep(TTL * 2)
    await eventually_members(west, "r", {"a": "east", "b": "west"})
    await east.hub.apply([Leave("r", "a")])
    await eventually_members(west, "r", {"b": "west"})
    west.hub.session_ended("b")
    await eventually_members(east, "r", {})


async def test_members_of_a_dead_node_expire(
    regions: dict[str, LocalRedis], nodes: dict[str, Node]
) -> None:
    doomed = Node(regions, "east")
    await doomed.hub.start()
    doomed.hub.session_started("m")
    await doomed.join("r", "m", "here")
    await eventually_members(nodes["west"], "r", {"m": "here"})
    await doomed.hub.close()  # it stops refreshing, as a killed node would
    await eventually_members(nodes["west"], "r", {})
    await eventually_members(nodes["east"], "r", {})


async def test_a_member_follows_its_session_to_another_node(
    regions: dict[str, LocalRedis], nodes: dict[str, Node]
) -> None:
    first = Node(regions, "east")
    await first.hub.start()
    first.hub.session_started("m")
    await first.join("r", "m", "moving")
    await first.hub.close()  # a graceful stop: the session moves on, its member stays
    nodes["east"].hub.session_started("m")
    await asyncio.sleep(TTL * 2.5)
    assert await nodes["west"].members("r") == {"m": "moving"}


async def test_redis_restarting_empty_gets_members_back(
    regions: dict[str, LocalRedis], nodes: dict[str, Node]
) -> None:
    east, west = nodes["east"], nodes["west"]
    east.hub.session_started("a")
    await east.join("r", "a", "back")
    await eventually_members(west, "r", {"a": "back"})
    regions["east"].kill()
    await regions["east"].start()  # no persistence: it starts empty
    # The node that holds the live session re-announces it; the other region sees it.
    await eventually_members(west, "r", {"a": "back"})
    await eventually_members(east, "r", {"a": "back"})


async def test_a_region_cut_off_too_long_drops_out_and_returns(
    regions: dict[str, LocalRedis], nodes: dict[str, Node]
) -> None:
    east, west = nodes["east"], nodes["west"]
    west.hub.session_started("w")
    await west.join("r", "w", "far")
    await eventually_members(east, "r", {"w": "far"})
    await regions["west"].stop()
    # Writes in the other region still work meanwhile.
    east.hub.session_started("e")
    await east.join("r", "e", "near")
    await eventually_members(east, "r", {"e": "near"})
    await regions["west"].start()
    await eventually_members(east, "r", {"e": "near", "w": "far"})
