"""A node's view of presence: the rooms its queries read, kept current from every
region's store, and the members of its live sessions, kept alive in its own.

Writes go to this region's store only. Reads merge every region's: a node watches
a room in each store, so a room spans regions without copying writes between
them. Redis holds hints: when a store loses its data, the node re-announces the
members of its live sessions from memory; when it loses a peer region for longer
than a member's lifetime, that region's members drop out of the view.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from syncline.presence._model import (
    Join,
    Leave,
    Member,
    Message,
    PresenceConfig,
    PresenceOp,
    RoomEvent,
    RoomSnapshot,
)
from syncline.presence._store import RegionStore

log = logging.getLogger(__name__)

STORE_TIMEOUT_SECONDS = 2.0
IDLE_ROOM_SECONDS = 30.0
"""A room no subscription depends on stops being watched after this long unread."""

RoomsListener = Callable[[set[str]], None]


@dataclass
class RoomView:
    """One room as this node sees it, merged from every region's store."""

    room: str
    members: list[dict[str, Member]]
    """Per store: member -> latest state."""
    messages: list[list[Message]]
    """Per store: recent messages, oldest first."""
    loading: list[list[RoomEvent] | None]
    """Per store: events held back while a snapshot is read (None when not loading)."""
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    last_read: float = field(default_factory=time.monotonic)
    _merged: list[Member] | None = None

    def merged_members(self) -> list[Member]:
        if self._merged is None:
            latest: dict[str, Member] = {}
            for by_member in self.members:
                for member in by_member.values():
                    seen = latest.get(member.member)
                    if seen is None or seen.updated_ms < member.updated_ms:
                        latest[member.member] = member
            self._merged = [latest[m] for m in sorted(latest)]
        return self._merged

    def changed(self) -> None:
        self._merged = None

    def apply(self, store: int, event: RoomEvent, kept: int) -> None:
        if event.kind == "set" and event.member and event.entry is not None:
            self.members[store][event.member] = Member.from_entry(event.member, event.entry)
        elif event.kind == "leave" and event.member:
            self.members[store].pop(event.member, None)
        elif event.kind == "message" and event.entry is not None:
            messages = self.messages[store]
            messages.append(Message.from_entry(event.entry))
            del messages[:-kept]
        self.changed()

    def load(self, store: int, snapshot: RoomSnapshot) -> None:
        self.members[store] = {
            member: Member.from_entry(member, json.loads(entry))
            for member, entry in snapshot.members.items()
        }
        self.messages[store] = [Message.from_entry(json.loads(m)) for m in snapshot.messages]
        self.changed()


class PresenceHub:
    """Presence for one node: reads across regions, writes to its own region."""

    def __init__(
        self,
        local: RegionStore,
        peers: Sequence[RegionStore] = (),
        *,
        config: PresenceConfig | None = None,
        clock_ms: Callable[[], float] = lambda: time.time() * 1000.0,
    ) -> None:
        self.config = config or PresenceConfig()
        self._stores = [local, *peers]
        self._clock_ms = clock_ms
        self._views: dict[str, RoomView] = {}
        self._retained: dict[str, int] = {}
        self._listeners: list[RoomsListener] = []
        self._changed: set[str] = set()
        self._flush_scheduled = False
        self._sessions: dict[str, dict[str, str]] = {}
        """Live sessions' members on this node: member -> room -> entry (to re-announce)."""
        self._connections: dict[str, int] = {}
        """Live connections per member: a reconnecting client may briefly have two."""
        self._unadopted: set[str] = set()
        """Sessions new to this node whose rooms (from an earlier node) are not yet known."""
        self._dropped_stores: set[int] = set()
        self._stale_stores: set[int] = set()
        """Stores a room could not be read from: every room is read from them again."""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._closed = False
        for index, store in enumerate(self._stores):
            store.set_listeners(
                functools.partial(self._on_event, index), functools.partial(self._reload, index)
            )

    async def start(self) -> None:
        for store in self._stores:
            await store.start()
        self._loop_task = asyncio.create_task(self._keep_alive(), name="presence-keep-alive")

    async def close(self) -> None:
        """Stop. Sessions that end afterwards leave their members to expire (or to
        be adopted by the node their sessions move to). Idempotent."""
        if self._closed:
            return
        self._closed = True
        tasks = [*self._tasks, *([self._loop_task] if self._loop_task else [])]
        for task in tasks:
            task.cancel()
        if tasks:
            # A task inside redis-py may not end at once; stores close regardless.
            await asyncio.wait(tasks, timeout=STORE_TIMEOUT_SECONDS)
        for store in self._stores:
            await store.close()

    def add_listener(self, listener: RoomsListener) -> None:
        """Call ``listener`` with the rooms whose view changed (batched per loop turn)."""
        self._listeners.append(listener)

    # -- reads ----------------------------------------------------------------

    async def view(self, room: str, wait_seconds: float) -> RoomView:
        """The room's view, watched from now on; waits up to ``wait_seconds`` for a
        first read of it (after that the view fills in and listeners hear of it)."""
        view = self._views.get(room)
        if view is None:
            count = len(self._stores)
            view = RoomView(
                room, [{} for _ in range(count)], [[] for _ in range(count)], [None] * count
            )
            self._views[room] = view
            self._spawn(self._load(view))
        view.last_read = time.monotonic()
        if not view.ready.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(view.ready.wait(), wait_seconds)
        return view

    def retain(self, room: str) -> None:
        """A subscription depends on ``room``: keep watching it."""
        self._retained[room] = self._retained.get(room, 0) + 1

    def release(self, room: str) -> None:
        left = self._retained.get(room, 0) - 1
        if left > 0:
            self._retained[room] = left
        else:
            self._retained.pop(room, None)

    async def _load(self, view: RoomView) -> None:
        await asyncio.gather(*(self._load_from(view, i) for i in range(len(self._stores))))
        view.ready.set()
        self._mark_changed(view.room)

    async def _load_from(self, view: RoomView, store_index: int) -> None:
        store = self._stores[store_index]
        view.loading[store_index] = []
        try:
            await asyncio.wait_for(store.watch(view.room), STORE_TIMEOUT_SECONDS)
            snapshot = await asyncio.wait_for(store.snapshot(view.room), STORE_TIMEOUT_SECONDS)
        except (RedisError, OSError, TimeoutError) as exc:
            # The store's reconnect reloads every watched room.
            log.warning("presence: could not read room from store %s: %s", store.name, exc)
            view.loading[store_index] = None
            self._stale_stores.add(store_index)  # read again by the next upkeep
            return
        view.load(store_index, snapshot)
        held, view.loading[store_index] = view.loading[store_index] or [], None
        for event in held:
            view.apply(store_index, event, self.config.messages_kept)

    def _reload(self, store_index: int) -> None:
        self._spawn(self._reload_store(store_index))

    async def _reload_store(self, store_index: int) -> None:
        self._dropped_stores.discard(store_index)
        self._stale_stores.discard(store_index)
        views = list(self._views.values())
        await asyncio.gather(*(self._load_from(view, store_index) for view in views))
        for view in views:
            self._mark_changed(view.room)
        if store_index == 0:
            await self._refresh_sessions()  # the store may have restarted empty

    def _on_event(self, store_index: int, event: RoomEvent) -> None:
        view = self._views.get(event.room)
        if view is None:
            return
        held = view.loading[store_index]
        if held is not None:
            held.append(event)
            return
        view.apply(store_index, event, self.config.messages_kept)
        self._mark_changed(event.room)

    def _mark_changed(self, room: str) -> None:
        self._changed.add(room)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        rooms, self._changed = self._changed, set()
        self._flush_scheduled = False
        for listener in self._listeners:
            listener(rooms)

    # -- writes ---------------------------------------------------------------

    def session_started(self, member: str) -> None:
        """A session is live on this node; it may have joined rooms on another node."""
        self._connections[member] = self._connections.get(member, 0) + 1
        self._sessions.setdefault(member, {})
        self._unadopted.add(member)

    def session_ended(self, member: str) -> None:
        """The client left: its member leaves every room now, not at expiry. A
        client that already reconnected here (its new connection started before
        the old one ended) stays."""
        left = self._connections.get(member, 0) - 1
        if left > 0:
            self._connections[member] = left
            return
        self._connections.pop(member, None)
        self._unadopted.discard(member)
        rooms = self._sessions.pop(member, None)
        if rooms and not self._closed:
            self._spawn(self._apply_to_store([Leave(room, member) for room in rooms]))

    async def apply(self, ops: Sequence[PresenceOp]) -> None:
        """Apply a committed mutation's presence operations.

        A store that is down does not fail the mutation: live sessions' members are
        re-announced from memory when it returns.
        """
        for op in ops:
            rooms = self._sessions.get(op.member) if isinstance(op, Join | Leave) else None
            if rooms is None:
                continue
            if isinstance(op, Join):
                rooms[op.room] = op.entry
            else:
                rooms.pop(op.room, None)
        await self._apply_to_store(ops)

    async def _apply_to_store(self, ops: Sequence[PresenceOp]) -> None:
        deadline = self._clock_ms() + self.config.member_ttl_seconds * 1000
        try:
            await asyncio.wait_for(self._stores[0].apply(ops, deadline), STORE_TIMEOUT_SECONDS)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("presence store %s is unavailable: %s", self._stores[0].name, exc)

    # -- upkeep ---------------------------------------------------------------

    async def _keep_alive(self) -> None:
        interval = self.config.member_ttl_seconds / 4
        while True:
            await asyncio.sleep(interval)
            try:
                await self._adopt()
                await self._refresh_sessions()
                await asyncio.wait_for(
                    self._stores[0].sweep(self._clock_ms()), STORE_TIMEOUT_SECONDS
                )
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning("presence upkeep failed on %s: %s", self._stores[0].name, exc)
            await self._forget_idle_rooms()
            self._drop_lost_stores()
            for store_index in list(self._stale_stores):
                if self._stores[store_index].disconnected_since is None:
                    self._spawn(self._reload_store(store_index))

    async def _adopt(self) -> None:
        for member in list(self._unadopted):
            found = await asyncio.wait_for(
                self._stores[0].member_rooms(member), STORE_TIMEOUT_SECONDS
            )
            self._unadopted.discard(member)
            rooms = self._sessions.get(member)
            if rooms is not None:
                for room, entry in found.items():
                    rooms.setdefault(room, entry)

    async def _refresh_sessions(self) -> None:
        entries = [
            (room, member, entry)
            for member, rooms in self._sessions.items()
            for room, entry in rooms.items()
        ]
        deadline = self._clock_ms() + self.config.member_ttl_seconds * 1000
        await asyncio.wait_for(self._stores[0].refresh(entries, deadline), STORE_TIMEOUT_SECONDS)

    async def _forget_idle_rooms(self) -> None:
        now = time.monotonic()
        for room, view in list(self._views.items()):
            if room not in self._retained and now - view.last_read > IDLE_ROOM_SECONDS:
                del self._views[room]
                for store in self._stores:
                    with contextlib.suppress(RedisError, OSError, TimeoutError):
                        await asyncio.wait_for(store.unwatch(room), STORE_TIMEOUT_SECONDS)

    def _drop_lost_stores(self) -> None:
        """A region cut off for longer than a member lives: its members are gone."""
        now = time.monotonic()
        for index, store in enumerate(self._stores):
            since = store.disconnected_since
            if since is None or index in self._dropped_stores:
                continue
            if now - since > self.config.member_ttl_seconds:
                self._dropped_stores.add(index)
                for view in self._views.values():
                    view.members[index] = {}
                    view.changed()
                    self._mark_changed(view.room)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("presence task failed: %s", task.exception())
