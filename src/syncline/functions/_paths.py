"""Function paths: ``"module:name"``, nested ``"dir/module:name"``.

Convex clients send paths in a few spellings (``messages:send``,
``messages.js:send``, ``messages`` for ``messages:default``); all name the same
function, so every path is canonicalised once, where it enters.
"""

from __future__ import annotations

import re

from syncline._errors import FunctionNotFoundError

_SEGMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
_MAX_PATH_LENGTH = 512


def canonical_path(path: str) -> str:
    """Return ``module:name`` for any spelling a client may send.

    Raises FunctionNotFoundError for a path that cannot name a function, with
    the same message as an unknown function so paths cannot be probed.
    """
    if not isinstance(path, str) or not path or len(path) > _MAX_PATH_LENGTH:
        raise FunctionNotFoundError(f"Could not find public function for '{str(path)[:80]}'")
    module, sep, name = path.rpartition(":")
    if not sep:
        module, name = path, "default"
    for suffix in (".js", ".py", ".ts"):
        if module.endswith(suffix):
            module = module[: -len(suffix)]
            break
    segments = module.split("/")
    if not all(_SEGMENT.match(s) for s in segments) or not _SEGMENT.match(name):
        raise FunctionNotFoundError(f"Could not find public function for '{path}'")
    return f"{module}:{name}"


def run_path_to_function_path(run_path: str) -> str:
    """Map ``/api/run/dir/module/name`` (Convex's HTTP run endpoint) to a path."""
    parts = [p for p in run_path.split("/") if p]
    if len(parts) < 2:
        raise FunctionNotFoundError(f"Could not find public function for '{run_path}'")
    return canonical_path("/".join(parts[:-1]) + ":" + parts[-1])
