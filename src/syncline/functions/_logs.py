"""Per-call capture of a function's ``print`` and ``logging`` output as Convex ``logLines``.

``print`` is wrapped once, process-wide; inside a function call a context
variable routes lines to that call's list, everywhere else it prints as usual.
An app's own loggers (``logging.getLogger(__name__)`` in an app module) hand
their records to :data:`APP_LOG_HANDLER` (see :func:`capture_app_loggers`), which
does the same. Lines carry Convex's level prefixes: ``[LOG]`` for ``print``,
``[DEBUG]``, ``[INFO]``, ``[WARN]`` and ``[ERROR]`` for records.
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
LEVELS = ("DEBUG", "INFO", "LOG", "WARN", "ERROR")
"""Convex's log levels, least severe first (``print`` is LOG)."""


def _append(lines: list[str], level: str, text: str) -> None:
    if len(lines) < MAX_LOG_LINES:
        lines.append(f"[{level}] {text[:MAX_LINE_LENGTH]}")
    elif len(lines) == MAX_LOG_LINES:
        lines.append("[WARN] further log lines were dropped")


def _capturing_print(*args: Any, **kwargs: Any) -> None:
    lines = _lines.get()
    if lines is None or kwargs.get("file") not in (None,):
        _original_print(*args, **kwargs)
        return
    buffer = io.StringIO()
    _original_print(*args, **{**kwargs, "file": buffer, "end": ""})
    _append(lines, "LOG", buffer.getvalue())


def _level_name(levelno: int) -> str:
    if levelno >= logging.ERROR:
        return "ERROR"
    if levelno >= logging.WARNING:
        return "WARN"
    return "INFO" if levelno >= logging.INFO else "DEBUG"


class _AppLogHandler(logging.Handler):
    """Routes an app logger's records into the running call's log lines; outside
    any call (an app module's import) they go to Syncline's function log."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
        except Exception:  # a bad format string in app code must not fail the call
            self.handleError(record)
            return
        lines = _lines.get()
        if lines is None:
            log.log(record.levelno, "%s: %s", record.name, text)
        else:
            _append(lines, _level_name(record.levelno), text)


APP_LOG_HANDLER = _AppLogHandler()


def capture_app_loggers(package: str) -> None:
    """Capture every record of the loggers under ``package`` (an app's modules).

    They record from DEBUG up, like Convex's ``console.debug``, and do not
    propagate: their lines reach clients and the log tail, not the service's log.
    """
    logger = logging.getLogger(package)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    if APP_LOG_HANDLER not in logger.handlers:
        logger.addHandler(APP_LOG_HANDLER)


def install_print_capture() -> None:
    builtins.print = _capturing_print


def split_level(line: str) -> tuple[str, str]:
    """``"[WARN] text"`` -> ``("WARN", "text")``; an unprefixed line is LOG."""
    if line.startswith("["):
        level, _, text = line[1:].partition("] ")
        if level in LEVELS:
            return level, text
    return "LOG", line


def in_function_call() -> bool:
    """Whether a function is running in this context (a nested call shares its lines)."""
    return _lines.get() is not None


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
