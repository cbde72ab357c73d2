"""``ctx.presence``: what queries read and mutations change."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from syncline._errors import LimitExceededError, PresenceError
from syncline.presence._hub import PresenceHub
from syncline.presence._model import (
    Broadcast,
    Join,
    Leave,
    PresenceConfig,
    PresenceOp,
    check_room,
    encode_value,
    member_entry,
    message_entry,
)

FIRST_READ_WAIT_SECONDS = 0.25
"""How long a query waits for a room it has not read before; after that it sees
what is known, and re-runs when the room's state arrives."""


class PresenceReader:
    """``ctx.presence`` in a query: a room's members and recent messages.

    A subscription to a query that read a room re-runs when the room changes.
    """

    def __init__(self, hub: PresenceHub | None, *, system: bool = False) -> None:
        """``system``: Syncline's own functions, which may read reserved rooms."""
        self._hub = hub
        self._system = system
        self.rooms: set[str] = set()

    def _require_hub(self) -> PresenceHub:
        if self._hub is None:
            raise PresenceError("presence is not available on this server")
        return self._hub

    async def members(self, room: str) -> list[dict[str, Any]]:
        """The room's members, by member id: ``{"member", "state", "updatedAt"}`` each."""
        hub = self._require_hub()
        check_room(room, hub.config, system=self._system)
        self.rooms.add(room)
        view = await hub.view(room, FIRST_READ_WAIT_SECONDS)
        return [member.to_value() for member in view.merged_members()]

    async def messages(self, room: str, limit: int | float | None = None) -> list[dict[str, Any]]:
        """The room's most recent broadcast messages, oldest first:
        ``{"id", "member", "body", "sentAt"}`` each."""
        hub = self._require_hub()
        check_room(room, hub.config, system=self._system)
        kept = hub.config.messages_kept
        count = kept if limit is None else int(limit)
        if not 0 <= count <= kept:
            raise LimitExceededError(f"messages(limit={limit!r}): the limit is 0 to {kept}")
        self.rooms.add(room)
        view = await hub.view(room, FIRST_READ_WAIT_SECONDS)
        # Each store's messages are in send order; a stable sort by time keeps it.
        merged = sorted(
            (m for per_store in view.messages for m in per_store), key=lambda m: m.sent_ms
        )
        return [message.to_value() for message in merged[len(merged) - count :]] if count else []


class PresenceWriter(PresenceReader):
    """``ctx.presence`` in a mutation: also join, leave and broadcast.

    Changes take effect when the mutation commits; a mutation that fails changes
    no room. A member is the calling client session: join and leave need one.
    """

    def __init__(
        self, hub: PresenceHub | None, member: str | None, now_ms: Callable[[], float]
    ) -> None:
        super().__init__(hub)
        self._member = member
        self._now_ms = now_ms
        self.ops: list[PresenceOp] = []

    def _config(self) -> PresenceConfig:
        return self._require_hub().config

    def _add(self, op: PresenceOp) -> None:
        limit = self._config().max_ops_per_call
        if len(self.ops) >= limit:
            raise LimitExceededError(f"a mutation may make at most {limit} presence changes")
        self.ops.append(op)

    def _session_member(self, what: str) -> str:
        if self._member is None:
            raise PresenceError(
                f"ctx.presence.{what} needs a client session (a WebSocket connection): "
                "HTTP and scheduled calls may only broadcast"
            )
        return self._member

    async def join(self, room: str, state: Any = None) -> str:
        """Join ``room`` with ``state``, or replace the state if already a member.
        Returns this session's member id in the room."""
        config = self._config()
        check_room(room, config)
        member = self._session_member("join")
        state_json = encode_value(state, "presence state", config.max_state_bytes)
        self._add(Join(room, member, member_entry(state_json, self._now_ms())))
        return member

    async def leave(self, room: str) -> None:
        check_room(room, self._config())
        self._add(Leave(room, self._session_member("leave")))

    async def broadcast(self, room: str, body: Any) -> str:
        """Send ``body`` to the room's message stream; returns the message id."""
        config = self._config()
        check_room(room, config)
        body_json = encode_value(body, "presence message", config.max_message_bytes)
        message_id = uuid.uuid4().hex
        self._add(
            Broadcast(room, message_entry(message_id, self._member, body_json, self._now_ms()))
        )
        return message_id
