"""References to functions: a path string, a FunctionSpec, or ``api.mod.fn``.

``api.chat.messages.send`` names ``"chat/messages:send"``: every attribute but
the last is a folder or module, the last is the exported function name.
"""

from __future__ import annotations

from dataclasses import dataclass

from syncline._errors import FunctionNotFoundError
from syncline.functions._decorators import FunctionSpec
from syncline.functions._paths import canonical_path


@dataclass(frozen=True)
class FunctionReference:
    """A function named by path; ``internal`` marks references from ``internal``."""

    path: str
    internal: bool = False


class _Namespace:
    __slots__ = ("_internal", "_parts")

    def __init__(self, parts: tuple[str, ...], internal: bool) -> None:
        self._parts = parts
        self._internal = internal

    def __getattr__(self, name: str) -> _Namespace:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Namespace((*self._parts, name), self._internal)

    @property
    def reference(self) -> FunctionReference:
        if len(self._parts) < 2:
            raise FunctionNotFoundError(f"'{'.'.join(self._parts)}' does not name a function")
        module = "/".join(self._parts[:-1])
        return FunctionReference(f"{module}:{self._parts[-1]}", self._internal)

    def __repr__(self) -> str:
        root = "internal" if self._internal else "api"
        return ".".join((root, *self._parts))


api = _Namespace((), internal=False)
"""``api.module.function``: references to public functions."""
internal = _Namespace((), internal=True)
"""``internal.module.function``: references to internal functions."""

FunctionRef = str | FunctionSpec | FunctionReference | _Namespace


def resolve_reference(ref: object) -> str:
    """Return the canonical path of any accepted reference form."""
    if isinstance(ref, str):
        return canonical_path(ref)
    if isinstance(ref, FunctionSpec):
        if ref.path is None:
            raise FunctionNotFoundError(
                f"{ref.handler.__qualname__} is not part of the loaded app (is its module in "
                "the app directory?)"
            )
        return ref.path
    if isinstance(ref, _Namespace):
        return ref.reference.path
    if isinstance(ref, FunctionReference):
        return canonical_path(ref.path)
    raise FunctionNotFoundError(
        f"expected a function reference (a 'module:name' string, a function, or api.module.name), "
        f"got {type(ref).__name__}"
    )
