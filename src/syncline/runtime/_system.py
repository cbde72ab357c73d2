"""Syncline's own functions (``_system/...``): what the admin dashboard calls.

They run like any function (queries are reactive, mutations are transactions),
but only for a caller holding an admin key, and with a ctx that also sees the
live deployment and, on nodes that have one, the cluster's health.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from syncline.functions import FunctionKind, FunctionSpec, Visibility
from syncline.runtime._versions import VersionRecord
from syncline.values import Validator, as_validator

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


Handler = Callable[..., Awaitable[Any]]


def system_function(
    kind: FunctionKind, args: Mapping[str, Validator]
) -> Callable[[Handler], FunctionSpec]:
    """Declare a system function: internal, so no client reaches it but with an
    admin key (see ``FunctionRunner.resolve``)."""

    def wrap(handler: Handler) -> FunctionSpec:
        return FunctionSpec(handler, kind, Visibility.INTERNAL, as_validator(args), None)

    return wrap


def system_registry(named: Mapping[str, FunctionSpec]) -> dict[str, FunctionSpec]:
    """``{"module:name": spec}`` as system functions by path (``_system/module:name``)."""
    for path, spec in named.items():
        spec.path = SYSTEM_PREFIX + path
    return {SYSTEM_PREFIX + path: spec for path, spec in named.items()}
