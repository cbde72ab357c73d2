"""A snapshot opened at its first read.

A mutation that only inserts never reads, so it needs no snapshot: opening
one costs a pooled connection and two round trips to PostgreSQL for nothing.
The committer accepts a commit that read nothing at any snapshot ts, because
nothing written since can invalidate it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from syncline.storage._interface import CommitLogEntry, Document, Snapshot, Storage


async def _nothing() -> None:
    return None


class DeferredSnapshot:
    """A :class:`Snapshot` of ``storage`` that is opened when first read.

    Use as an async context manager; the snapshot, if opened, is closed on exit.
    ``before_open`` runs just before opening (e.g. to wait out a catalog change).
    """

    def __init__(
        self, storage: Storage, *, before_open: Callable[[], Awaitable[None]] = _nothing
    ) -> None:
        self._storage = storage
        self._before_open = before_open
        self._context = storage.snapshot()
        self._snapshot: Snapshot | None = None
        self._opening = asyncio.Lock()  # concurrent first reads open it once

    @property
    def opened(self) -> bool:
        return self._snapshot is not None

    @property
    def ts(self) -> int:
        if self._snapshot is None:
            raise RuntimeError("the deferred snapshot was never read, so it has no ts")
        return self._snapshot.ts

    async def __aenter__(self) -> DeferredSnapshot:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._snapshot is not None:
            self._snapshot = None
            await self._context.__aexit__(*exc)

    async def _open(self) -> Snapshot:
        if self._snapshot is not None:
            return self._snapshot
        async with self._opening:
            if self._snapshot is None:
                await self._before_open()
                self._snapshot = await self._context.__aenter__()
            return self._snapshot

    async def get(self, doc_id: str) -> Document | None:
        return await (await self._open()).get(doc_id)

    async def scan(
        self, index_id: int, start: bytes, end: bytes | None, *, descending: bool, limit: int
    ) -> list[tuple[bytes, Document]]:
        snapshot = await self._open()
        return await snapshot.scan(index_id, start, end, descending=descending, limit=limit)

    async def commits_after(self, ts: int, *, limit: int) -> list[CommitLogEntry]:
        return await (await self._open()).commits_after(ts, limit=limit)

    async def table_documents(self, table_number: int) -> list[Document]:
        return await (await self._open()).table_documents(table_number)
