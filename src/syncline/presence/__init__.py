"""Presence and broadcast: ephemeral room state that costs no database write.

Members join rooms with a state (a cursor, a status), update it as often as they
like, and leave or expire; functions read rooms reactively through ``ctx.presence``.
"""

from syncline.presence._context import PresenceReader, PresenceWriter
from syncline.presence._hub import PresenceHub
from syncline.presence._model import (
    SYSTEM_ROOM_PREFIX,
    Broadcast,
    PresenceConfig,
    encode_value,
    member_id_of,
    message_entry,
)
from syncline.presence._redis import RedisStore, redis_presence
from syncline.presence._store import MemoryStore, RegionStore

__all__ = [
    "SYSTEM_ROOM_PREFIX",
    "Broadcast",
    "MemoryStore",
    "PresenceConfig",
    "PresenceHub",
    "PresenceReader",
    "PresenceWriter",
    "RedisStore",
    "RegionStore",
    "encode_value",
    "member_id_of",
    "message_entry",
    "redis_presence",
]
