"""A region's presence rooms in Redis.

Every change is one Lua script call, so a member's state, its expiry deadline and
the event other nodes hear change together. Keys (under ``syncline:presence:``):

- ``room:<room>:members``   hash: member -> entry
- ``room:<room>:messages``  list: recent broadcast messages, oldest first
- ``member:<member>``       hash: the rooms a member is in (for a session that moves node)
- ``deadlines``             sorted set: ``<member>\\n<room>`` by expiry deadline (ms)
- channel ``room:<room>``   the room's events

Scripts build key names from the prefix, so this store needs a standalone Redis
(one per region), not Redis Cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from redis.exceptions import RedisError

from syncline._redis import connect_redis
from syncline.presence._hub import PresenceHub
from syncline.presence._model import (
    Broadcast,
    Join,
    Leave,
    PresenceConfig,
    PresenceOp,
    RoomEvent,
    RoomSnapshot,
)
from syncline.presence._store import RefreshEntry, RegionStore
from syncline.telemetry import observe_gauge

log = logging.getLogger(__name__)

PREFIX = "syncline:presence:"
MESSAGES_TTL_MS = 3_600_000
"""A quiet room's messages are forgotten after an hour."""
SWEEP_BATCH = 1000
RECONNECT_SECONDS = 0.5
CLOSE_TIMEOUT_SECONDS = 2.0
CONTROL_CHANNEL = PREFIX + "control"
"""Always subscribed, so the event reader has a subscription before any room."""

_JOIN = """
local new = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1] .. '\\n' .. ARGV[5])
if new == 1 then
  redis.call('HSET', KEYS[3], ARGV[5], '1')
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
end
redis.call('PUBLISH', KEYS[4], '{"k":"set","m":"' .. ARGV[1] .. '","e":' .. ARGV[2] .. '}')
return new
"""

_LEAVE = """
redis.call('ZREM', KEYS[2], ARGV[1] .. '\\n' .. ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then
  redis.call('PUBLISH', KEYS[4], '{"k":"leave","m":"' .. ARGV[1] .. '"}')
  return 1
end
return 0
"""

_BROADCAST = """
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', KEYS[2], '{"k":"message","e":' .. ARGV[1] .. '}')
return 1
"""

_REFRESH = """
local p = ARGV[1]
local added = 0
for i = 4, #ARGV, 3 do
  local room, member, entry = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if redis.call('HSETNX', p .. 'room:' .. room .. ':members', member, entry) == 1 then
    redis.call('PUBLISH', p .. 'room:' .. room,
      '{"k":"set","m":"' .. member .. '","e":' .. entry .. '}')
    added = added + 1
  end
  redis.call('ZADD', KEYS[1], ARGV[2], member .. '\\n' .. room)
  redis.call('HSET', p .. 'member:' .. member, room, '1')
  redis.call('PEXPIRE', p .. 'member:' .. member, ARGV[3])
end
return added
"""

_SWEEP = """
local p = ARGV[1]
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, key in ipairs(due) do
  local cut = string.find(key, '\\n', 1, true)
  local member, room = string.sub(key, 1, cut - 1), string.sub(key, cut + 1)
  redis.call('ZREM', KEYS[1], key)
  redis.call('HDEL', p .. 'member:' .. member, room)
  if redis.call('HDEL', p .. 'room:' .. room .. ':members', member) == 1 then
    redis.call('PUBLISH', p .. 'room:' .. room, '{"k":"leave","m":"' .. member .. '"}')
  end
end
return #due
"""

_MEMBER_ROOMS = """
local out = {}
for _, room in ipairs(redis.call('HKEYS', KEYS[1])) do
  local entry = redis.call('HGET', ARGV[1] .. 'room:' .. room .. ':members', ARGV[2])
  if entry then
    table.insert(out, room)
    table.insert(out, entry)
  end
end
return out
"""


def _members_key(room: str) -> str:
    return f"{PREFIX}room:{room}:members"


def _messages_key(room: str) -> str:
    return f"{PREFIX}room:{room}:messages"


def _channel(room: str) -> str:
    return f"{PREFIX}room:{room}"


def _member_key(member: str) -> str:
    return f"{PREFIX}member:{member}"


_DEADLINES = PREFIX + "deadlines"


def _membership_keys(op: Join | Leave) -> list[str]:
    """The keys a join or leave script changes."""
    return [_members_key(op.room), _DEADLINES, _member_key(op.member), _channel(op.room)]


_ROOM_OF_CHANNEL = len(PREFIX) + len("room:")


class RedisStore(RegionStore):
    """Rooms in one region's Redis; events arrive over one pub/sub connection."""

    def __init__(
        self,
        url: str,
        *,
        name: str = "local",
        messages_kept: int = 100,
        member_ttl_ms: float = 10_000,
        timeout_seconds: float = 2.0,
    ) -> None:
        super().__init__(name)
        self._url = url
        self._messages_kept = messages_kept
        # A member's room list outlives its members so a moved session finds them.
        self._member_key_ttl_ms = int(member_ttl_ms * 3)
        self._client = connect_redis(url, timeout_seconds=timeout_seconds, decode_responses=True)
        self._join = self._client.register_script(_JOIN)
        self._leave = self._client.register_script(_LEAVE)
        self._broadcast = self._client.register_script(_BROADCAST)
        self._refresh = self._client.register_script(_REFRESH)
        self._sweep = self._client.register_script(_SWEEP)
        self._member_rooms = self._client.register_script(_MEMBER_ROOMS)
        self._watched: set[str] = set()
        self._pubsub: Any = None
        self._closing = False
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._reader = asyncio.create_task(self._read_events(), name=f"presence-{self.name}")

    async def close(self) -> None:
        self._closing = True
        if self._reader is not None:
            self._reader.cancel()
            # redis-py can swallow a cancellation while it reads; never wait forever.
            await asyncio.wait({self._reader}, timeout=CLOSE_TIMEOUT_SECONDS)
        closing = [self._client.aclose()]
        if self._pubsub is not None:
            closing.insert(0, self._pubsub.aclose())
        for step in closing:
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                await asyncio.wait_for(step, CLOSE_TIMEOUT_SECONDS)

    async def apply(self, ops: Sequence[PresenceOp], deadline_ms: float) -> None:
        # One script call per operation, in order. Not a pipeline: redis-py checks
        # that a pipeline's scripts are loaded first, an extra round trip.
        for op in ops:
            if isinstance(op, Join):
                join: list[str | int] = [
                    op.member,
                    op.entry,
                    int(deadline_ms),
                    self._member_key_ttl_ms,
                    op.room,
                ]
                await self._join(_membership_keys(op), join)
            elif isinstance(op, Leave):
                await self._leave(_membership_keys(op), [op.member, op.room])
            elif isinstance(op, Broadcast):
                keys = [_messages_key(op.room), _channel(op.room)]
                message: list[str | int] = [op.message, self._messages_kept, MESSAGES_TTL_MS]
                await self._broadcast(keys, message)

    async def refresh(self, entries: Sequence[RefreshEntry], deadline_ms: float) -> None:
        if not entries:
            return
        args: list[Any] = [PREFIX, int(deadline_ms), self._member_key_ttl_ms]
        for entry in entries:
            args.extend(entry)
        await self._refresh([_DEADLINES], args)

    async def member_rooms(self, member: str) -> dict[str, str]:
        flat = await self._member_rooms([_member_key(member)], [PREFIX, member])
        return dict(zip(flat[::2], flat[1::2], strict=True))

    async def sweep(self, now_ms: float) -> int:
        swept: int = await self._sweep([_DEADLINES], [PREFIX, int(now_ms), SWEEP_BATCH])
        return swept

    async def snapshot(self, room: str) -> RoomSnapshot:
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.hgetall(_members_key(room))
            pipe.lrange(_messages_key(room), 0, -1)
            members, messages = await pipe.execute()
        return RoomSnapshot(members, messages)

    async def watch(self, room: str) -> None:
        self._watched.add(room)
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.subscribe(_channel(room))

    async def unwatch(self, room: str) -> None:
        self._watched.discard(room)
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.unsubscribe(_channel(room))

    async def _read_events(self) -> None:
        connected_before = False
        while not self._closing:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CONTROL_CHANNEL, *(_channel(r) for r in self._watched))
                self._pubsub = pubsub
                self.disconnected_since = None
                if connected_before:
                    log.info("presence store %s reconnected", self.name)
                connected_before = True
                # Events may have been missed meanwhile, or Redis restarted empty.
                self._on_reset()
                async for message in pubsub.listen():
                    if message["type"] != "message":
                        continue
                    channel: str = message["channel"]
                    if channel == CONTROL_CHANNEL:
                        continue
                    try:
                        event = RoomEvent.parse(channel[_ROOM_OF_CHANNEL:], message["data"])
                    except (ValueError, KeyError):
                        log.warning("presence store %s: unreadable event", self.name)
                        continue
                    self._on_event(event)
            except (RedisError, OSError) as exc:
                if self._pubsub is not None:
                    log.warning("presence store %s lost its connection: %s", self.name, exc)
                self._pubsub = None
                self.disconnected_since = self.disconnected_since or time.monotonic()
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
                await asyncio.sleep(RECONNECT_SECONDS)


def redis_presence(
    url: str,
    *,
    region: str,
    peers: Mapping[str, str] | None = None,
    config: PresenceConfig | None = None,
) -> PresenceHub:
    """A node's presence over its region's Redis at ``url``, reading rooms also from
    ``peers`` (``{region: url}``), so that rooms span regions."""
    config = config or PresenceConfig()

    def store(store_url: str, name: str) -> RedisStore:
        return RedisStore(
            store_url,
            name=name,
            messages_kept=config.messages_kept,
            member_ttl_ms=config.member_ttl_seconds * 1000,
        )

    stores = [store(url, region)]
    stores += [store(peer_url, name) for name, peer_url in sorted((peers or {}).items())]
    observe_gauge(
        "syncline.redis.connected",
        "1",
        "1 while this node's connection to a region's Redis is up, else 0",
        lambda: [
            (0.0 if s.disconnected_since is not None else 1.0, {"syncline.region": s.name})
            for s in stores
        ],
    )
    return PresenceHub(stores[0], stores[1:], config=config)
