"""The function log tail: what functions printed and how they failed, for admins.

Each call that logged a line or failed adds entries to the reserved presence room
:data:`LOG_ROOM`, so the tail spans every node and region the way presence rooms
do, costs no database write, and is read reactively by ``_system/logs:tail``.
Entries are sent in batches, off the caller's path: a function's response never
waits for its log lines to be published.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from syncline._errors import SynclineError
from syncline.functions import split_level
from syncline.presence import SYSTEM_ROOM_PREFIX, Broadcast, PresenceHub, encode_value
from syncline.presence import message_entry as presence_message_entry

log = logging.getLogger(__name__)

LOG_ROOM = SYSTEM_ROOM_PREFIX + "logs"
FLUSH_DELAY_SECONDS = 0.05
"""Entries wait this long for others to share their store write."""
MAX_PENDING_ENTRIES = 1000
"""Entries held while the store is slow; past this, the oldest are dropped."""
MAX_MESSAGE_CHARS = 4096
"""An entry's text is cut to this length (a traceback can be long)."""


def failure_text(exc: SynclineError) -> str:
    """A failure as the admin sees it: the client's message and, for an uncaught
    exception, the exception itself (admins may see what clients must not)."""
    cause = exc.__cause__
    if exc.code == "InternalError" and cause is not None:
        return f"{exc.message}: {type(cause).__name__}: {cause}"
    return f"{exc.code}: {exc.message}"


class LogFeed:
    """Publishes function log entries to :data:`LOG_ROOM` of a presence hub."""

    def __init__(
        self, hub: PresenceHub, *, clock_ms: Callable[[], float] = lambda: time.time() * 1000.0
    ) -> None:
        self._hub = hub
        self._clock_ms = clock_ms
        self._pending: list[Broadcast] = []
        self._flush: asyncio.Task[None] | None = None
        self._closed = False

    def record(self, path: str, kind: str, lines: list[str], error: str | None = None) -> None:
        """Queue one call's lines (``"[LEVEL] text"``) and, if it failed, its error."""
        if self._closed or (not lines and error is None):
            return
        entries = [split_level(line) for line in lines]
        if error is not None:
            entries.append(("ERROR", error))
        now = self._clock_ms()
        for level, text in entries:
            body: dict[str, Any] = {
                "path": path,
                "kind": kind,
                "level": level,
                "message": text[:MAX_MESSAGE_CHARS],
            }
            body_json = encode_value(body, "log entry", self._hub.config.max_message_bytes)
            entry = presence_message_entry(uuid.uuid4().hex, None, body_json, now)
            self._pending.append(Broadcast(LOG_ROOM, entry))
        del self._pending[:-MAX_PENDING_ENTRIES]
        if self._flush is None:
            self._arm()

    def _arm(self) -> None:
        self._flush = asyncio.get_running_loop().create_task(
            self._publish_soon(), name="log-feed-flush"
        )
        self._flush.add_done_callback(self._flushed)

    async def _publish_soon(self) -> None:
        await asyncio.sleep(FLUSH_DELAY_SECONDS)
        # Only the newest entries survive in the room anyway.
        batch = self._pending[-self._hub.config.messages_kept :]
        self._pending = []
        await self._hub.apply(batch)

    def _flushed(self, task: asyncio.Task[None]) -> None:
        self._flush = None
        if not task.cancelled() and task.exception() is not None:
            log.warning("publishing function log entries failed: %r", task.exception())
        if self._pending and not self._closed:
            self._arm()  # entries that arrived while the last batch was being written

    async def close(self) -> None:
        """Publish what is queued (bounded by the hub's store timeout), then stop."""
        self._closed = True
        task = self._flush
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task
