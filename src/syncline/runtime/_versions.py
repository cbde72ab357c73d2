"""The deployed versions of the app: which went live when, kept with the data.

Each deploy appends a record (version, time, the sources' digest, how many
functions and tables) to a list in the ``meta`` table, written by whoever
applies versions (the embedded server, the txn leader, fenced by its epoch).
The admin dashboard shows it; the list keeps the newest ``MAX_VERSIONS_KEPT``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from syncline.app import App
from syncline.storage import Storage

HISTORY_KEY = "app_history"
MAX_VERSIONS_KEPT = 50


@dataclass(frozen=True)
class VersionRecord:
    """One version that went live."""

    version: int
    deployed_at_ms: float
    digest: str
    """SHA-256 of the version's sources (``AppBundle.digest``)."""
    functions: int
    tables: int

    def to_value(self) -> dict[str, Any]:
        """As ``_system/deployment:describe`` returns it."""
        return {
            "version": float(self.version),
            "deployedAt": self.deployed_at_ms,
            "digest": self.digest,
            "functions": float(self.functions),
            "tables": float(self.tables),
        }


def describe_version(
    version: int, app: App, digest: str, *, now_ms: Callable[[], float] = lambda: time.time() * 1e3
) -> VersionRecord:
    tables = 0 if app.schema is None else len(app.schema.tables)
    return VersionRecord(version, now_ms(), digest, len(app.functions), tables)


async def load_versions(storage: Storage) -> tuple[VersionRecord, ...]:
    """The recorded versions, oldest first (a malformed list reads as none)."""
    text = await storage.get_meta(HISTORY_KEY)
    try:
        return tuple(VersionRecord(**entry) for entry in json.loads(text or "[]"))
    except (TypeError, ValueError):
        return ()


async def record_version(
    storage: Storage, record: VersionRecord, *, epoch: int | None = None
) -> tuple[VersionRecord, ...]:
    """Append ``record``; the list as stored now. ``epoch``: the committer's, so a
    deposed txn leader cannot write it."""
    kept = (*await load_versions(storage), record)[-MAX_VERSIONS_KEPT:]
    await storage.set_meta(HISTORY_KEY, json.dumps([asdict(r) for r in kept]), epoch=epoch)
    return kept
