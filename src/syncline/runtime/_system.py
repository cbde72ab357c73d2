"""Syncline's own functions (``_system/...``): what the admin dashboard calls.

They run like any function (queries are reactive, mutations are transactions),
but only for a caller holding an admin key, and with a ctx that also sees the
live deployment and, on nodes that have one, the cluster's health.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from syncline.functions import FunctionSpec
from syncline.runtime._versions import VersionRecord

SYSTEM_PREFIX = "_system/"
"""Paths of system functions start with this; no app module can (``_`` files are private)."""

HEALTH_FEED = "health"
"""The feed a query that read the cluster's health depends on."""


class HealthSource(Protocol):
    """The cluster as one node sees it, kept current in the background."""

    def snapshot(self) -> dict[str, Any]:
        """The latest view, as a Convex value (see ``_system/health:cluster``)."""
        ...

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` whenever the view changes."""
        ...


@dataclass(frozen=True)
class SystemServices:
    """What system functions see beyond an app function's ctx."""

    functions: Mapping[str, FunctionSpec]
    """Every system function by path."""
    mode: str
    """``embedded`` or ``cluster``."""
    health: HealthSource | None = None
    versions: Callable[[], Sequence[VersionRecord]] = tuple
    """The deployed versions, oldest first."""


def is_system_path(path: str) -> bool:
    return path.startswith(SYSTEM_PREFIX)
