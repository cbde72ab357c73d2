"""Clock skew for a child process: libfaketime, preloaded.

The Debian package ``faketime`` ships the library. Only the wall clock is
moved: the monotonic clock stays true, as NTP would leave it, so timeouts and
sleeps in the skewed process still measure real time.
"""

from __future__ import annotations

import glob

from syncline._errors import ConfigError

_LIBRARY_PATTERNS = (
    "/usr/lib/*/faketime/libfaketimeMT.so.1",
    "/usr/lib/faketime/libfaketimeMT.so.1",
    "/usr/local/lib/faketime/libfaketimeMT.so.1",
)


def faketime_library() -> str:
    """The multi-threaded libfaketime; ConfigError says how to install it."""
    for pattern in _LIBRARY_PATTERNS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    raise ConfigError(
        "clock skew needs libfaketime: install the faketime package (apt-get install -y faketime)"
    )


def faketime_environment(offset_seconds: float) -> dict[str, str]:
    """Environment variables that run a child with its wall clock ``offset_seconds``
    ahead (negative: behind)."""
    return {
        "LD_PRELOAD": faketime_library(),
        "FAKETIME": f"{offset_seconds:+g}s",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
