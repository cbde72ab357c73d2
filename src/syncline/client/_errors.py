"""Errors raised by :class:`syncline.client.Client`.

SynclineError
└── ClientError              misuse of the client, or the client is closed
    ├── FunctionError        a query, mutation or action failed on the server
    └── ConnectionLostError  the connection dropped while an action was in flight
                             (retryable: the action ran at most once)
"""

from __future__ import annotations

from syncline._errors import SynclineError
from syncline.values import Value


class ClientError(SynclineError):
    """Root of the client's errors."""

    code = "ClientError"


class FunctionError(ClientError):
    """A function failed; ``data`` is the ``AppError`` data, or None for other failures."""

    code = "FunctionError"

    def __init__(self, message: str, *, data: Value = None, path: str | None = None) -> None:
        super().__init__(message)
        self.data = data
        """What the function raised as ``AppError(data)``; None for other failures."""
        self.path = path
        """The function's path (``module:name``)."""


class ConnectionLostError(ClientError):
    """The connection dropped while an action was in flight.

    Actions are not resent (they are not idempotent), so the action ran once or
    not at all; the caller decides whether to retry.
    """

    code = "ConnectionLost"
    retryable = True


__all__ = ["ClientError", "ConnectionLostError", "FunctionError"]
