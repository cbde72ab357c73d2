"""The client's mutations and actions, from call to resolution.

A request is sent once it is first in line and, for a mutation, the window of
mutations in flight has room. A mutation that committed resolves only once a
Transition reaching its commit ts has been applied (read-your-writes). On a new
connection every unresolved request is sent again with the same request id; the
server applies each (session id, request id) once. An action in flight when the
connection drops fails instead, as it may have run.
"""

from __future__ import annotations

import asyncio
import collections
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from syncline._errors import ProtocolError
from syncline.client._connection import Connection
from syncline.client._errors import ClientError, ConnectionLostError, FunctionError
from syncline.client._protocol import FunctionResponse, RequestKind, encode_args, request_frame
from syncline.values import Value

#: Mutations sent and not yet answered, at most. The server runs a session's
#: mutations one at a time and ends a session that queues more than 1024; past
#: this window, mutations wait (in order) on the client.
MAX_MUTATIONS_IN_FLIGHT = 256


class RequestStatus(enum.Enum):
    NOT_SENT = "not sent"
    SENT = "sent"
    AWAITING_TS = "awaiting ts"
    """The mutation committed; it resolves when a Transition reaches its ts."""


@dataclass(eq=False)
class Request:
    request_id: int
    kind: RequestKind
    path: str
    frame: str
    future: asyncio.Future[Value]
    status: RequestStatus = RequestStatus.NOT_SENT
    ever_sent: bool = False
    """Sent on some connection: it may have run, so it is never silently dropped."""
    value: Value = None
    ts: int = 0


class RequestQueue:
    """A client's unresolved requests, and the order and pace they are sent in."""

    def __init__(self) -> None:
        self._requests: dict[int, Request] = {}
        self._unsent: collections.deque[Request] = collections.deque()
        """Requests waiting to be sent on this connection, in request id order."""
        self._mutations_in_flight = 0
        self._next_request_id = 0

    def __len__(self) -> int:
        """How many requests are unresolved."""
        return len(self._requests)

    def add(
        self, kind: RequestKind, path: str, args: Mapping[str, Any] | None
    ) -> asyncio.Future[Value]:
        """Queue a request to be sent; returns the future its outcome settles."""
        request_id = self._next_request_id
        self._next_request_id += 1
        request = Request(
            request_id,
            kind,
            path,
            request_frame(kind, request_id, path, encode_args(args)),
            asyncio.get_running_loop().create_future(),
        )
        self._requests[request_id] = request
        self._unsent.append(request)
        return request.future

    def send(self, conn: Connection | None) -> None:
        """Send waiting requests in order, within the window of mutations in flight."""
        while conn is not None and self._unsent:
            request = self._unsent[0]
            if request.future.cancelled() and not request.ever_sent:
                self._unsent.popleft()
                del self._requests[request.request_id]  # cancelled before it was ever sent
                continue
            if request.kind is RequestKind.MUTATION:
                if self._mutations_in_flight >= MAX_MUTATIONS_IN_FLIGHT:
                    return
                self._mutations_in_flight += 1
            self._unsent.popleft()
            request.status = RequestStatus.SENT
            request.ever_sent = True
            conn.send(request.frame)

    def resend(self, conn: Connection) -> None:
        """Send every unresolved request again, in order, on a new connection."""
        # Every unresolved mutation goes again: the server deduplicates by
        # (session id, request id) and answers with the original outcome. (Actions in
        # flight were failed when the last connection dropped.)
        for request in self._requests.values():
            request.status = RequestStatus.NOT_SENT
        self._unsent = collections.deque(self._requests[i] for i in sorted(self._requests))
        self._mutations_in_flight = 0
        self.send(conn)

    def connection_lost(self, reason: str) -> None:
        """Fail the actions in flight: they ran at most once, and are not resent."""
        for request_id, request in list(self._requests.items()):
            if request.kind is RequestKind.ACTION and request.status is RequestStatus.SENT:
                del self._requests[request_id]
                settle_error(
                    request.future,
                    ConnectionLostError(
                        f"connection lost while action {request.path} was running ({reason}); "
                        "it ran at most once"
                    ),
                )

    def respond(
        self, conn: Connection, response: FunctionResponse, *, remote_ts: int
    ) -> Request | None:
        """Apply a response, received on ``conn`` when the client is at ``remote_ts``.

        Returns the request it answers; None for a stale response (a resent request
        answered twice, or one already failed locally), which changes nothing.
        """
        request = self._requests.get(response.request_id)
        if request is None or request.status is not RequestStatus.SENT:
            return None
        if request.kind is not response.kind:
            raise ProtocolError(
                f"{response.kind.value}Response for request {response.request_id}, "
                f"which is a {request.kind.value}"
            )
        if request.kind is RequestKind.MUTATION:
            self._mutations_in_flight -= 1
            self.send(conn)
        if response.error_message is not None:
            del self._requests[response.request_id]
            settle_error(
                request.future,
                FunctionError(response.error_message, data=response.error_data, path=request.path),
            )
            return request
        if response.ts is not None and response.ts > remote_ts:
            request.status = RequestStatus.AWAITING_TS
            request.value = response.value
            request.ts = response.ts
            return request
        del self._requests[response.request_id]
        settle_value(request.future, response.value)
        return request

    def resolve_through(self, ts: int) -> None:
        """Resolve the committed mutations that a Transition reaching ``ts`` reflects."""
        for request_id, request in list(self._requests.items()):
            if request.status is RequestStatus.AWAITING_TS and request.ts <= ts:
                del self._requests[request_id]
                settle_value(request.future, request.value)

    def fail(self, error: ClientError) -> None:
        """Fail every unresolved request."""
        for request in self._requests.values():
            settle_error(request.future, error)
        self._requests.clear()
        self._unsent.clear()


def settle_value(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def settle_error(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


__all__ = ["Request", "RequestQueue", "RequestStatus", "settle_error", "settle_value"]
