"""ZooKeeper through kazoo, bridged into asyncio.

kazoo is threaded: its calls block and its callbacks run on its own threads.
Blocking calls go through ``asyncio.to_thread``; callbacks hop onto the event
loop with ``call_soon_threadsafe``. Session loss is surfaced as an event so
that leaders can step down (kazoo's Election recipe does not interrupt a leader
when its session is lost).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable

# Imported here, on the importing thread, rather than lazily on kazoo's threads:
# CPython 3.11 can fail ("AST constructor recursion depth mismatch") when two
# threads compile modules at once.
import kazoo.handlers.threading
import kazoo.protocol.connection
import kazoo.recipe.election
import kazoo.recipe.lock  # noqa: F401
from kazoo.client import KazooClient, KazooState

from syncline._errors import UnavailableError
from syncline.telemetry import observe_gauge

log = logging.getLogger(__name__)


_live_sessions: weakref.WeakSet[ZkSession] = weakref.WeakSet()
observe_gauge(
    "syncline.zookeeper.connected",
    "1",
    "1 while every ZooKeeper session of this process is connected, else 0",
    lambda: [(1.0 if all(_connected(z) for z in _live_sessions) else 0.0, {})],
)


def _connected(session: ZkSession) -> bool:
    return session.connected.is_set()


class ZkSession:
    """One kazoo client (one ZooKeeper session) with its state mirrored on the loop."""

    def __init__(self, hosts: str, *, session_timeout_seconds: float = 6.0) -> None:
        self.hosts = hosts
        self.session_timeout_seconds = session_timeout_seconds
        self.client = KazooClient(hosts=hosts, timeout=session_timeout_seconds)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listeners: list[Callable[[str], None]] = []
        self.connected: asyncio.Event = asyncio.Event()
        _live_sessions.add(self)

    def on_state(self, listener: Callable[[str], None]) -> None:
        """``listener(state)`` on the loop: "CONNECTED", "SUSPENDED" or "LOST"."""
        self._listeners.append(listener)

    def _state_changed(self, state: str) -> None:  # kazoo thread
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._publish, str(state))

    def _publish(self, state: str) -> None:
        if state == KazooState.CONNECTED:
            self.connected.set()
        else:
            self.connected.clear()
        for listener in self._listeners:
            listener(state)

    async def start(self, timeout_seconds: float = 15.0) -> None:
        self._loop = asyncio.get_running_loop()
        self.client.add_listener(self._state_changed)
        try:
            await asyncio.to_thread(self.client.start, timeout_seconds)
        except Exception as exc:
            raise UnavailableError(f"cannot reach ZooKeeper at {self.hosts}") from exc
        self.connected.set()

    async def close(self) -> None:
        _live_sessions.discard(self)

        def stop() -> None:
            try:
                self.client.stop()
            finally:
                self.client.close()

        await asyncio.to_thread(stop)
