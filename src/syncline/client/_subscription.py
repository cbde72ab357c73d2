"""Live query results: :class:`Subscription`, and the client's record of each query.

Identical subscriptions (same path and arguments) share one :class:`Query` of the
client's query set. The client stores each new result on the query and offers it to
every subscription; a subscription keeps only the latest result its consumer has not
yet received.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from syncline.client._errors import ClientError, FunctionError
from syncline.client._protocol import JsonObject, QueryResult
from syncline.values import Value, values_equal


@dataclass(frozen=True)
class Outcome:
    """A query's latest result, as subscribers receive it."""

    value: Value
    error: FunctionError | None

    @classmethod
    def from_result(cls, result: QueryResult, path: str) -> Outcome:
        if result.error_message is None:
            return cls(result.value, None)
        return cls(None, FunctionError(result.error_message, data=result.error_data, path=path))

    def same_as(self, other: Outcome) -> bool:
        if self.error is None and other.error is None:
            return values_equal(self.value, other.value)
        if self.error is None or other.error is None:
            return False
        return self.error.message == other.error.message and values_equal(
            self.error.data, other.error.data
        )


@dataclass(eq=False)
class Query:
    """One query of the client's query set, shared by its identical subscriptions."""

    query_id: int
    token: str
    path: str
    args_json: JsonObject
    subscribers: set[Subscription] = field(default_factory=set)
    outcome: Outcome | None = None


class Subscription:
    """Results of one query, as an async iterator; from :meth:`Client.subscribe`.

    Yields the current result first, then each result that differs from the one
    last yielded. A slow consumer skips intermediate results and receives the
    latest. A failed query raises :class:`FunctionError` from the iterator (the
    subscription stays usable and yields again when the query recovers). Iteration
    ends when the subscription or the client is closed.
    """

    def __init__(self, query: Query, on_close: Callable[[Query, Subscription], None]) -> None:
        self._query = query
        self._on_close = on_close
        """Tells the client, which drops the query with its last subscriber."""
        self._pending: Outcome | None = None
        self._last: Outcome | None = None
        self._closed = False
        self._failure: ClientError | None = None
        self._wakeup = asyncio.Event()

    @property
    def path(self) -> str:
        """The query's path (``module:name``)."""
        return self._query.path

    def _offer(self, outcome: Outcome) -> None:
        if self._last is not None and outcome.same_as(self._last):
            # Back to what the consumer already has: nothing new to yield.
            self._pending = None
            return
        self._pending = outcome
        self._wakeup.set()

    def _finish(self, failure: ClientError | None) -> None:
        self._closed = True
        self._pending = None
        self._failure = failure
        self._wakeup.set()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Any:
        while self._pending is None:
            if self._closed:
                if self._failure is not None:
                    raise self._failure
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        outcome, self._pending = self._pending, None
        self._last = outcome
        if outcome.error is not None:
            raise outcome.error
        return outcome.value

    def close(self) -> None:
        """Stop receiving results; the query leaves the query set with its last subscriber."""
        if self._closed:
            return
        self._finish(None)
        self._on_close(self._query, self)

    async def aclose(self) -> None:
        """:meth:`close`, for ``contextlib.aclosing`` and symmetry with async generators."""
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Subscription {self._query.path} query {self._query.query_id} {state}>"


__all__ = ["Outcome", "Query", "Subscription"]
