"""A region's reads: its replica, or the primary while the replica lags too far.

A sync node in a non-primary region reads its replica. When the replica stops
or falls further behind the primary than ``max_lag_seconds`` (measured as how
long a commit the primary has had is still missing on the replica), reads move
to the primary; when the replica has caught up again, and holds everything the
node may already have shown a client, they move back. Clients notice nothing
but latency: reads never go back in time, because a switch back waits until
the replica has every commit a snapshot of the primary was opened at.

Writes never go through a sync node's storage (commits go to the txn leader);
the few storage writes the interface has go to the primary.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, Sequence

from syncline._errors import SynclineError
from syncline.storage import (
    Catalog,
    CommitEntry,
    CommitLogEntry,
    IndexMeta,
    PostgresStorage,
    Snapshot,
    SnapshotContext,
    TableMeta,
)

log = logging.getLogger(__name__)


class _Snapshot:
    """A snapshot of whichever database reads go to when it opens."""

    def __init__(self, storage: RegionalStorage) -> None:
        self._storage = storage
        self._inner: SnapshotContext | None = None

    async def __aenter__(self) -> Snapshot:
        storage = self._storage
        on_primary = storage.on_primary
        self._inner = (storage.primary if on_primary else storage.replica).snapshot()
        snapshot = await self._inner.__aenter__()
        if on_primary:
            storage.served_from_primary(snapshot.ts)
        return snapshot

    async def __aexit__(self, *exc: object) -> None:
        assert self._inner is not None
        await self._inner.__aexit__(*exc)


class RegionalStorage:
    """Storage for a region's sync node: replica first, primary as the fallback."""

    def __init__(
        self,
        replica: PostgresStorage,
        primary: PostgresStorage,
        *,
        max_lag_seconds: float = 5.0,
        check_interval_seconds: float = 0.25,
    ) -> None:
        self.replica = replica
        self.primary = primary
        self._max_lag = max_lag_seconds
        self._interval = check_interval_seconds
        self.on_primary = False
        """Whether reads currently go to the primary."""
        self.lag_seconds = 0.0
        """How long the oldest commit the replica is missing has been on the primary."""
        self._served_ts = 0
        """The newest snapshot handed out from the primary: the replica must have it
        before reads move back."""
        self._missing: deque[tuple[float, int]] = deque()
        self._monitor: asyncio.Task[None] | None = None

    @property
    def active(self) -> PostgresStorage:
        return self.primary if self.on_primary else self.replica

    def served_from_primary(self, ts: int) -> None:
        """A snapshot of the primary at ``ts`` was handed out."""
        self._served_ts = max(self._served_ts, ts)

    async def open(self) -> None:
        await self.primary.open()
        try:
            await self.replica.open()
        except SynclineError as exc:
            log.warning("the replica is unavailable (%s): reading the primary", exc.message)
            self.on_primary = True
        self._monitor = asyncio.create_task(self._watch(), name="replica-lag")

    async def close(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        await self.replica.close()
        await self.primary.close()

    # -- following the replica's lag -------------------------------------------------------

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                primary_ts = await self.primary.max_ts()
            except SynclineError as exc:
                log.warning("checking the primary failed: %s", exc.message)
                continue
            try:
                replica_ts: int | None = await self.replica.max_ts()
            except SynclineError:
                replica_ts = None
            self.check(primary_ts, replica_ts, time.monotonic())

    def check(self, primary_ts: int, replica_ts: int | None, now: float) -> None:
        """Account for one look at both databases (``replica_ts`` None: unreachable)."""
        if not self._missing or primary_ts > self._missing[-1][1]:
            self._missing.append((now, primary_ts))
        if replica_ts is not None:
            while self._missing and self._missing[0][1] <= replica_ts:
                self._missing.popleft()
        self.lag_seconds = now - self._missing[0][0] if self._missing else 0.0
        if not self.on_primary and (replica_ts is None or self.lag_seconds > self._max_lag):
            reason = "unreachable" if replica_ts is None else f"{self.lag_seconds:.1f} s behind"
            log.warning("the replica is %s: reading the primary", reason)
            self.on_primary = True
        elif (
            self.on_primary
            and replica_ts is not None
            and self.lag_seconds <= self._max_lag / 2
            and replica_ts >= self._served_ts
        ):
            log.info("the replica has caught up: reading it again")
            self.on_primary = False

    # -- the storage interface ---------------------------------------------------------------

    def snapshot(self) -> SnapshotContext:
        return _Snapshot(self)

    async def max_ts(self) -> int:
        return await self.active.max_ts()

    async def commits_after(self, ts: int, *, limit: int) -> list[CommitLogEntry]:
        return await self.active.commits_after(ts, limit=limit)

    async def load_catalog(self) -> Catalog:
        return await self.active.load_catalog()

    async def get_meta(self, key: str) -> str | None:
        return await self.active.get_meta(key)

    async def commit_notifications(self) -> AsyncGenerator[int, None]:
        """Wake-ups from both databases: whichever is read, its commits wake us."""
        queue: asyncio.Queue[int] = asyncio.Queue()

        async def follow(storage: PostgresStorage) -> None:
            async with contextlib.aclosing(storage.commit_notifications()) as commits:
                async for ts in commits:
                    queue.put_nowait(ts)

        followers = [asyncio.create_task(follow(s)) for s in (self.replica, self.primary)]
        try:
            while True:
                yield await queue.get()
        finally:
            for task in followers:
                task.cancel()
            await asyncio.gather(*followers, return_exceptions=True)

    # Writes: none from a sync node in practice; the primary is where they belong.

    async def prune(self, *, commit_log_before_ts: int, idempotency_before_ts: int) -> int:
        return await self.primary.prune(
            commit_log_before_ts=commit_log_before_ts, idempotency_before_ts=idempotency_before_ts
        )

    async def write_batch(self, batch: Sequence[CommitEntry], *, epoch: int | None = None) -> None:
        await self.primary.write_batch(batch, epoch=epoch)

    async def acquire_epoch(self) -> int:
        return await self.primary.acquire_epoch()

    async def find_idempotent_many(self, keys: Sequence[str]) -> dict[str, tuple[int, str]]:
        return await self.primary.find_idempotent_many(keys)

    async def find_idempotent(self, key: str) -> tuple[int, str] | None:
        return await self.primary.find_idempotent(key)

    async def create_table(self, name: str) -> TableMeta:
        return await self.primary.create_table(name)

    async def create_index(
        self,
        table_number: int,
        name: str,
        fields: tuple[str, ...],
        entries: Sequence[tuple[bytes, str]],
    ) -> IndexMeta:
        return await self.primary.create_index(table_number, name, fields, entries)

    async def drop_index(self, index_id: int) -> None:
        await self.primary.drop_index(index_id)

    async def set_meta(self, key: str, value: str, *, epoch: int | None = None) -> None:
        await self.primary.set_meta(key, value, epoch=epoch)
