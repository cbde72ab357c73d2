"""The error a local server raises when it cannot be started or stopped."""

from __future__ import annotations

from syncline._errors import SynclineError


class DevServerError(SynclineError):
    """A local PostgreSQL, ZooKeeper or Redis failed to start or stop in time.

    The message names the server and ends with the last lines of its log. Missing
    binaries are a :class:`~syncline._errors.ConfigError` instead: nothing to retry.
    """

    code = "DevServerFailed"
