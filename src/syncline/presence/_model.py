"""Presence rooms: their members and messages, the operations on them, and limits.

A room's state is ephemeral: Redis (or memory, embedded) holds it as hints that a
lost store forgets and live sessions re-announce. Values travel as Convex JSON
text so a store never decodes them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from syncline._errors import InvalidValueError, LimitExceededError
from syncline.values import check_value, from_json, to_json


@dataclass(frozen=True)
class PresenceConfig:
    member_ttl_seconds: float = 10.0
    """A member whose session stops refreshing it (a crashed client or node) leaves
    after this long. Live sessions refresh every third of it."""
    max_room_name_length: int = 256
    max_state_bytes: int = 64 * 1024
    """Largest presence state of one member, as Convex JSON."""
    max_message_bytes: int = 64 * 1024
    """Largest broadcast message."""
    messages_kept: int = 100
    """Recent broadcast messages a room keeps for members who subscribe later."""
    max_ops_per_call: int = 256
    """Presence operations one mutation may make."""


def member_id_of(session_id: str) -> str:
    """A session's public member id.

    Room members see each other's ids, so they must not reveal the session id
    (which names a session's requests for deduplication).
    """
    return hashlib.sha256(f"presence|{session_id}".encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Join:
    """Join ``room`` as ``member``, or replace the member's state."""

    room: str
    member: str
    entry: str
    """``{"s": <state as Convex JSON>, "t": <updated ms>}``"""


@dataclass(frozen=True)
class Leave:
    room: str
    member: str


@dataclass(frozen=True)
class Broadcast:
    room: str
    message: str
    """``{"id": ..., "m": <member or null>, "b": <body as Convex JSON>, "t": <sent ms>}``"""


PresenceOp = Join | Leave | Broadcast


SYSTEM_ROOM_PREFIX = "_system/"
"""Rooms Syncline keeps for itself (the function log tail): apps cannot use them."""


def check_room(room: object, config: PresenceConfig, *, system: bool = False) -> str:
    if not isinstance(room, str) or not room:
        raise InvalidValueError(f"a presence room is a non-empty string, got {room!r:.80}")
    if room.startswith(SYSTEM_ROOM_PREFIX) and not system:
        raise InvalidValueError(
            f"presence room {room!r:.80} is reserved: names starting with "
            f"{SYSTEM_ROOM_PREFIX!r} belong to Syncline"
        )
    if len(room) > config.max_room_name_length:
        raise LimitExceededError(
            f"presence room name is {len(room)} characters; the limit is "
            f"{config.max_room_name_length}"
        )
    return room


def encode_value(value: object, what: str, max_bytes: int) -> str:
    """``value`` as Convex JSON text, refused if it is not a value or too large."""
    check_value(value, path=what, max_bytes=max_bytes)
    return json.dumps(to_json(value), separators=(",", ":"), ensure_ascii=False)


def member_entry(state_json: str, now_ms: float) -> str:
    return f'{{"s":{state_json},"t":{int(now_ms)}}}'


def message_entry(message_id: str, member: str | None, body_json: str, now_ms: float) -> str:
    sender = json.dumps(member)
    return f'{{"id":"{message_id}","m":{sender},"b":{body_json},"t":{int(now_ms)}}}'


@dataclass(frozen=True)
class Member:
    """One member of a room as functions see it."""

    member: str
    state_json: Any
    """The state as decoded Convex JSON; each read decodes it afresh, so a function
    that changes what it read changes nobody else's copy."""
    updated_ms: float

    @staticmethod
    def from_entry(member: str, entry: dict[str, Any]) -> Member:
        return Member(member, entry["s"], float(entry["t"]))

    def to_value(self) -> dict[str, Any]:
        return {
            "member": self.member,
            "state": from_json(self.state_json),
            "updatedAt": self.updated_ms,
        }


@dataclass(frozen=True)
class Message:
    """One broadcast message as functions see it."""

    id: str
    member: str | None
    body_json: Any
    sent_ms: float

    @staticmethod
    def from_entry(entry: dict[str, Any]) -> Message:
        return Message(entry["id"], entry["m"], entry["b"], float(entry["t"]))

    def to_value(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "member": self.member,
            "body": from_json(self.body_json),
            "sentAt": self.sent_ms,
        }


@dataclass(frozen=True)
class RoomSnapshot:
    """A room as one region's store holds it: member entries and recent messages
    (oldest first)."""

    members: dict[str, str]
    messages: list[str]


@dataclass(frozen=True)
class RoomEvent:
    """A change to a room, as stores publish it."""

    room: str
    kind: str
    """``set``, ``leave`` or ``message``."""
    member: str | None = None
    entry: dict[str, Any] | None = None
    """The decoded member entry (``set``) or message entry (``message``)."""

    @staticmethod
    def parse(room: str, text: str | bytes) -> RoomEvent:
        obj = json.loads(text)
        return RoomEvent(room, obj["k"], obj.get("m"), obj.get("e"))
