"""This client's membership of a presence room, through the app's own mutations.

The app decides who may join which room, so membership goes through its
functions: a join mutation taking ``room`` and ``state`` (which calls
``ctx.presence.join``) and a leave mutation taking ``room``. Updates are latest
wins: a cursor moving faster than the round trip sends only its newest position.
The server forgets a member whose connection drops; this client joins again with
its latest state after every reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from syncline.client._errors import ClientError
from syncline.functions import FunctionRef

if TYPE_CHECKING:
    from syncline.client._client import Client

_UNSET: Any = object()


class Presence:
    """One room's membership; make it with :meth:`Client.presence`."""

    def __init__(
        self,
        client: Client,
        room: str,
        *,
        join: FunctionRef,
        leave: FunctionRef,
        forget: Callable[[Presence], None],
    ) -> None:
        self.room = room
        self.member: str | None = None
        """This client's member id in the room, once joined."""
        self._client = client
        self._join = join
        self._leave = leave
        self._forget = forget
        self._state: Any = _UNSET
        self._sent: Any = _UNSET
        self._sender: asyncio.Task[None] | None = None
        self._error: BaseException | None = None

    @property
    def joined(self) -> bool:
        return self._state is not _UNSET

    async def join(self, state: Any = None) -> str:
        """Join with ``state`` (or replace it); returns once the room has it."""
        self.update(state)
        await self.flush()
        assert self.member is not None
        return self.member

    def update(self, state: Any) -> None:
        """Set this member's state without waiting: latest wins, so calls faster
        than the server answers send only the newest. Errors surface in :meth:`flush`."""
        self._state = state
        if self._sender is None or self._sender.done():
            self._sender = asyncio.ensure_future(self._send_latest())

    async def flush(self) -> None:
        """Wait until the latest state reached the room; raises the error if the
        join mutation failed."""
        while self._sender is not None and not self._sender.done():
            await asyncio.shield(self._sender)
        error, self._error = self._error, None
        if error is not None:
            raise error

    async def leave(self) -> None:
        """Leave the room (and stop re-joining after reconnects)."""
        if self._sender is not None and not self._sender.done():
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        self._state = self._sent = _UNSET
        self._forget(self)
        await self._client.mutation(self._leave, {"room": self.room})

    def _reconnected(self) -> None:
        """The server forgot this member with the old connection: join again."""
        if self._state is not _UNSET:
            self._sent = _UNSET
            self.update(self._state)

    async def _send_latest(self) -> None:
        while self._state is not _UNSET and self._state is not self._sent:
            state = self._state
            try:
                self.member = await self._client.mutation(
                    self._join, {"room": self.room, "state": state}
                )
            except ClientError as exc:
                self._error = exc
                return
            self._sent = state
