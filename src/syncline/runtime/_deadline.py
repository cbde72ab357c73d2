"""The execution time limit of queries and mutations, paused while they wait for
storage (a restarting database must not fail them as too slow)."""

from __future__ import annotations

import asyncio

from syncline._errors import LimitExceededError
from syncline.functions import FunctionSpec


class PausableDeadline:
    """An ``asyncio.timeout`` that stops running while paused (``IoClock``)."""

    def __init__(self, deadline: asyncio.Timeout) -> None:
        self._deadline = deadline
        self._remaining: float | None = None

    def pause(self) -> None:
        when = self._deadline.when()
        if when is not None:
            self._remaining = when - asyncio.get_running_loop().time()
            self._deadline.reschedule(None)

    def resume(self) -> None:
        if self._remaining is not None:
            loop_now = asyncio.get_running_loop().time()
            self._deadline.reschedule(loop_now + self._remaining)
            self._remaining = None


def too_long(spec: FunctionSpec, limit: float) -> LimitExceededError:
    kind = spec.kind.value
    return LimitExceededError(
        f"{spec.path} ran longer than {limit:g} s, the limit for a {kind}; move slow work to "
        "an action"
    )
