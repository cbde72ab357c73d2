"""The presence hub over the in-process store: a client that reconnects before its
old connection ends keeps its rooms; the last connection's end leaves them."""

from __future__ import annotations

import asyncio

from syncline.presence import MemoryStore, PresenceConfig, PresenceHub
from syncline.presence._model import Join, member_entry


async def _members(hub: PresenceHub, room: str) -> list[str]:
    await asyncio.sleep(0.01)  # events arrive after the call that made them
    view = await hub.view(room, 1.0)
    return [m.member for m in view.merged_members()]


async def test_a_reconnected_session_keeps_its_rooms_until_its_last_connection_ends() -> None:
    hub = PresenceHub(MemoryStore(), config=PresenceConfig(member_ttl_seconds=60))
    await hub.start()
    try:
        hub.session_started("m")
        await hub.apply([Join("r", "m", member_entry("1", 0))])
        assert await _members(hub, "r") == ["m"]
        hub.session_started("m")  # the client reconnected; its old connection ends after
        hub.session_ended("m")
        assert await _members(hub, "r") == ["m"]
        hub.session_ended("m")
        assert await _members(hub, "r") == []
    finally:
        await hub.close()
