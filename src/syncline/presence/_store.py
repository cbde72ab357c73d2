"""One region's presence store, and the in-process one for embedded mode."""

from __future__ import annotations

import asyncio
import json
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence

from syncline.presence._model import (
    Broadcast,
    Join,
    Leave,
    PresenceOp,
    RoomEvent,
    RoomSnapshot,
)

EventListener = Callable[[RoomEvent], None]
ResetListener = Callable[[], None]
"""The store lost events (its connection dropped): watched rooms must be read again."""

RefreshEntry = tuple[str, str, str]
"""(room, member, entry) of a member whose session is alive."""


class RegionStore(ABC):
    """A region's rooms. Members expire at a deadline unless refreshed; every change
    to a watched room reaches the event listener."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._on_event: EventListener = lambda event: None
        self._on_reset: ResetListener = lambda: None
        self.disconnected_since: float | None = None
        """When (monotonic) the store lost its event connection, if it has."""

    def set_listeners(self, on_event: EventListener, on_reset: ResetListener) -> None:
        self._on_event = on_event
        self._on_reset = on_reset

    @abstractmethod
    async def start(self) -> None:
        """Connect; a store that is down now connects later on its own."""

    @abstractmethod
    async def close(self) -> None:
        """Disconnect."""

    @abstractmethod
    async def apply(self, ops: Sequence[PresenceOp], deadline_ms: float) -> None:
        """Apply ``ops`` in order; joined members expire at ``deadline_ms``."""

    @abstractmethod
    async def refresh(self, entries: Sequence[RefreshEntry], deadline_ms: float) -> None:
        """Push back the deadline of live members, and re-add any the store lost."""

    @abstractmethod
    async def member_rooms(self, member: str) -> dict[str, str]:
        """The rooms ``member`` is in, with its entry in each."""

    @abstractmethod
    async def sweep(self, now_ms: float) -> int:
        """Remove members past their deadline (publishing their leave); how many."""

    @abstractmethod
    async def snapshot(self, room: str) -> RoomSnapshot:
        """The room's members and recent messages now."""

    @abstractmethod
    async def watch(self, room: str) -> None:
        """Deliver the room's events from now on."""

    @abstractmethod
    async def unwatch(self, room: str) -> None:
        """Stop delivering the room's events."""


class MemoryStore(RegionStore):
    """Rooms in this process: embedded mode's store, and a reference for Redis's."""

    def __init__(self, messages_kept: int = 100, name: str = "local") -> None:
        super().__init__(name)
        self._messages_kept = messages_kept
        self._members: dict[str, dict[str, str]] = {}
        self._messages: dict[str, deque[str]] = {}
        self._deadlines: dict[tuple[str, str], float] = {}
        self._rooms_of: dict[str, set[str]] = {}
        self._watched: set[str] = set()

    async def start(self) -> None:
        """Nothing to connect to."""

    async def close(self) -> None:
        """Nothing to disconnect."""

    def _publish(self, room: str, kind: str, member: str | None, entry: str | None) -> None:
        if room in self._watched:
            decoded = None if entry is None else json.loads(entry)
            event = RoomEvent(room, kind, member, decoded)
            # As from Redis: listeners hear of a change after the call that made it.
            asyncio.get_running_loop().call_soon(self._on_event, event)

    def _set(self, room: str, member: str, entry: str, deadline_ms: float) -> None:
        self._members.setdefault(room, {})[member] = entry
        self._deadlines[(room, member)] = deadline_ms
        self._rooms_of.setdefault(member, set()).add(room)
        self._publish(room, "set", member, entry)

    def _leave(self, room: str, member: str) -> None:
        self._deadlines.pop((room, member), None)
        rooms = self._rooms_of.get(member)
        if rooms is not None:
            rooms.discard(room)
            if not rooms:
                del self._rooms_of[member]
        members = self._members.get(room)
        if members is None or members.pop(member, None) is None:
            return
        if not members:
            del self._members[room]
        self._publish(room, "leave", member, None)

    async def apply(self, ops: Sequence[PresenceOp], deadline_ms: float) -> None:
        for op in ops:
            if isinstance(op, Join):
                self._set(op.room, op.member, op.entry, deadline_ms)
            elif isinstance(op, Leave):
                self._leave(op.room, op.member)
            elif isinstance(op, Broadcast):
                kept = self._messages.setdefault(op.room, deque(maxlen=self._messages_kept))
                kept.append(op.message)
                self._publish(op.room, "message", None, op.message)

    async def refresh(self, entries: Sequence[RefreshEntry], deadline_ms: float) -> None:
        for room, member, entry in entries:
            if member in self._members.get(room, {}):
                self._deadlines[(room, member)] = deadline_ms
            else:
                self._set(room, member, entry, deadline_ms)

    async def member_rooms(self, member: str) -> dict[str, str]:
        return {room: self._members[room][member] for room in self._rooms_of.get(member, ())}

    async def sweep(self, now_ms: float) -> int:
        due = [key for key, deadline in self._deadlines.items() if deadline <= now_ms]
        for room, member in due:
            self._leave(room, member)
        return len(due)

    async def snapshot(self, room: str) -> RoomSnapshot:
        return RoomSnapshot(dict(self._members.get(room, {})), list(self._messages.get(room, ())))

    async def watch(self, room: str) -> None:
        self._watched.add(room)

    async def unwatch(self, room: str) -> None:
        self._watched.discard(room)
