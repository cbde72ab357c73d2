"""The cluster's health as one node sees it, for ``_system/health:cluster``.

A :class:`HealthMonitor` samples a view every interval: the regions with their
nodes and replication lag, the leaders (from whatever ``collect`` reads: the
process itself when embedded, ZooKeeper in a cluster) and the commit rate (from
the commits this node's subscriptions have read). Listeners hear only about
views that differ, so a dashboard's subscription re-runs when something changed,
not every tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

RATE_WINDOW_SECONDS = 5.0
"""The commit rate is the average over this long."""

Collect = Callable[[], Awaitable[dict[str, Any]]]
"""Reads ``{"regions": [...], "leaders": [...]}`` (see ``_system/health:cluster``)."""


class HealthMonitor:
    """Keeps a current health view; a :class:`~syncline.runtime.HealthSource`."""

    def __init__(
        self,
        *,
        mode: str,
        collect: Collect,
        commits_seen: Callable[[], int],
        last_commit_ts: Callable[[], int],
        interval_seconds: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``commits_seen``: a count of commits read so far (its rate is reported);
        ``last_commit_ts``: the newest commit's ts (ns) results are current at."""
        self._mode = mode
        self._collect = collect
        self._commits_seen = commits_seen
        self._last_commit_ts = last_commit_ts
        self._interval = interval_seconds
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque()
        self._view: dict[str, Any] = {
            "mode": mode,
            "commitsPerSecond": 0.0,
            "lastCommitTime": None,
            "regions": [],
            "leaders": [],
            "updatedAt": clock() * 1000.0,
        }
        self._listeners: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None

    def snapshot(self) -> dict[str, Any]:
        return self._view

    def on_change(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    async def start(self) -> None:
        if self._task is None:
            await self.refresh()
            self._task = asyncio.create_task(self._run(), name="health-monitor")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.refresh()
            except Exception:
                # What collect reads (ZooKeeper) may be down; the next tick tries again.
                log.warning("reading the cluster's health failed; retrying", exc_info=True)

    async def refresh(self) -> None:
        """Sample now; tell listeners if the view changed."""
        parts = await self._collect()
        now = self._clock()
        self._samples.append((now, self._commits_seen()))
        while len(self._samples) > 2 and now - self._samples[1][0] >= RATE_WINDOW_SECONDS:
            self._samples.popleft()
        (first_time, first_count), (_, count) = self._samples[0], self._samples[-1]
        elapsed = now - first_time
        rate = (count - first_count) / elapsed if elapsed > 0 else 0.0
        ts = self._last_commit_ts()
        view = {
            "mode": self._mode,
            "commitsPerSecond": round(rate, 1),
            "lastCommitTime": ts / 1e6 if ts else None,
            "regions": parts.get("regions", []),
            "leaders": parts.get("leaders", []),
        }
        if {k: val for k, val in self._view.items() if k != "updatedAt"} == view:
            return
        self._view = {**view, "updatedAt": now * 1000.0}
        for listener in self._listeners:
            listener()
