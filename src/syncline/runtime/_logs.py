"""Per-call capture of ``print`` output as Convex ``logLines``.

``print`` is wrapped once, process-wide; inside a function call a context
variable routes lines to that call's list, everywhere else it prints as usual.
"""

from __future__ import annotations

import builtins
import contextlib
import contextvars
import io
import logging
from collections.abc import Iterator
from typing import Any

log = logging.getLogger("syncline.functions")

_lines: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "syncline_log_lines", default=None
)
_original_print = builtins.print
MAX_LOG_LINES = 256
MAX_LINE_LENGTH = 8192


def _capturing_print(*args: Any, **kwargs: Any) -> None:
    lines = _lines.get()
    if lines is None or kwargs.get("file") not in (None,):
        _original_print(*args, **kwargs)
        return
    buffer = io.StringIO()
    _original_print(*args, **{**kwargs, "file": buffer, "end": ""})
    if len(lines) < MAX_LOG_LINES:
        lines.append("[LOG] " + buffer.getvalue()[:MAX_LINE_LENGTH])
    elif len(lines) == MAX_LOG_LINES:
        lines.append("[WARN] further log lines were dropped")


def install_print_capture() -> None:
    builtins.print = _capturing_print


@contextlib.contextmanager
def capture_log_lines(path: str) -> Iterator[list[str]]:
    """Collect the lines printed while the body runs (nested calls share the list)."""
    outer = _lines.get()
    lines: list[str] = outer if outer is not None else []
    token = _lines.set(lines)
    try:
        yield lines
    finally:
        _lines.reset(token)
        if outer is None:
            for line in lines:
                log.info("%s %s", path, line)
