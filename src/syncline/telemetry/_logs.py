"""How service processes log: readable lines by default, or one JSON object per line
(``SYNCLINE_LOG_FORMAT=json``) for log collectors."""

from __future__ import annotations

import datetime
import json
import logging
import os
import sys

from opentelemetry import trace

from syncline._errors import ConfigError

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, the
    service and instance it came from, the trace and span it was logged in, and
    the exception's traceback if any."""

    def __init__(self, service: str, instance: str) -> None:
        super().__init__()
        self._service = service
        self._instance = instance

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "service": self._service,
            "instance": self._instance,
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:  # logged while serving a traced call: join the two
            entry["trace_id"] = f"{span.trace_id:032x}"
            entry["span_id"] = f"{span.span_id:016x}"
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(service: str, instance: str, log_format: str | None = None) -> None:
    """Log INFO and above to stderr, as text or JSON (default: ``SYNCLINE_LOG_FORMAT``)."""
    log_format = (log_format or os.environ.get("SYNCLINE_LOG_FORMAT") or "text").lower()
    if log_format not in LOG_FORMATS:
        raise ConfigError(
            f"SYNCLINE_LOG_FORMAT={log_format!r}: expected one of {', '.join(LOG_FORMATS)}"
        )
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonLogFormatter(service, instance))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
