"""The client's side of its sync session, kept across connections.

What the server must know of a client (its identity, query set and unresolved
requests) lives here, is replayed onto each new connection, and is updated by what
the server sends. No I/O: frames go into the current connection's outbox, which the
connection's writer task drains.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from syncline._errors import ProtocolError
from syncline.client._connection import Connection
from syncline.client._errors import ClientError
from syncline.client._protocol import (
    INITIAL_VERSION,
    AuthError,
    FatalError,
    FunctionResponse,
    JsonObject,
    Ping,
    QueryRemoved,
    RequestKind,
    ServerMessage,
    TokenType,
    Transition,
    add_query,
    authenticate_frame,
    connect_frame,
    encode_args,
    modify_query_set_frame,
    remove_query,
)
from syncline.client._requests import RequestQueue, settle_error, settle_value
from syncline.client._subscription import Outcome, Query, Subscription
from syncline.functions import FunctionRef, resolve_reference
from syncline.values import Value, json_dumps_canonical

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Auth:
    token_type: TokenType
    value: str | None
    generation: int
    """Counts set_auth calls, so a waiter knows whether its token was the one sent."""


class Session:
    """A client's session state: identity, query set, unresolved requests.

    :meth:`_handshake`, :meth:`_handle` and :meth:`_disconnected` are the
    :class:`ConnectionRunner`'s callbacks; :class:`Client` adds the public face.
    """

    def __init__(self, *, admin_key: str | None) -> None:
        self._conn: Connection | None = None
        self._ready = asyncio.Event()
        """Set by the first Transition (or by a failure before it)."""
        self._startup_failure: ClientError | None = None
        self._session_id = str(uuid.uuid4())
        self._connection_count = 0
        self._last_close_reason: str | None = None
        self._max_observed_ts = 0
        self._remote = INITIAL_VERSION
        self._identity_version = 0
        self._auth: _Auth | None = (
            _Auth(TokenType.ADMIN, admin_key, 0) if admin_key is not None else None
        )
        self._auth_generation = 0
        self._auth_sent: tuple[int, int] | None = None
        """(generation, identity version) of the last Authenticate sent."""
        self._auth_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._queries: dict[str, Query] = {}
        self._queries_by_id: dict[int, Query] = {}
        self._next_query_id = 0
        self._query_set_version = 0
        self._requests = RequestQueue()

    # -- changes made by the client --------------------------------------------------

    def _add_subscription(self, path: FunctionRef, args: Mapping[str, Any] | None) -> Subscription:
        canonical = resolve_reference(path)
        args_json = encode_args(args)
        token = f"{canonical}|{json_dumps_canonical(args_json)}"
        query = self._queries.get(token)
        if query is None:
            query = Query(self._next_query_id, token, canonical, args_json)
            self._next_query_id += 1
            self._queries[token] = query
            self._queries_by_id[query.query_id] = query
            self._modify_query_set([add_query(query.query_id, canonical, args_json)])
        subscription = Subscription(query, self._remove_subscriber)
        query.subscribers.add(subscription)
        if query.outcome is not None:
            subscription._offer(query.outcome)
        return subscription

    def _remove_subscriber(self, query: Query, subscription: Subscription) -> None:
        query.subscribers.discard(subscription)
        if query.subscribers or self._queries.get(query.token) is not query:
            return
        del self._queries[query.token]
        del self._queries_by_id[query.query_id]
        self._modify_query_set([remove_query(query.query_id)])

    def _modify_query_set(self, modifications: list[JsonObject]) -> None:
        # While disconnected the change is only local: the next connection adds the
        # whole query set anew.
        if self._conn is None:
            return
        base = self._query_set_version
        self._query_set_version += 1
        self._conn.send(modify_query_set_frame(base, base + 1, modifications))

    def _send_request(
        self, kind: RequestKind, path: FunctionRef, args: Mapping[str, Any] | None
    ) -> asyncio.Future[Value]:
        future = self._requests.add(kind, resolve_reference(path), args)
        self._requests.send(self._conn)
        return future

    def _change_auth(self, token: str | None) -> asyncio.Future[None]:
        """Authenticate with ``token`` from now on; the future settles with the verdict."""
        self._auth_generation += 1
        generation = self._auth_generation
        self._auth = (
            _Auth(TokenType.USER, token, generation)
            if token is not None
            else _Auth(TokenType.NONE, None, generation)
        )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._auth_waiters.append((generation, waiter))
        if self._conn is not None:
            self._conn.send(self._authenticate(self._auth))
        return waiter

    def _authenticate(self, auth: _Auth) -> str:
        base = self._identity_version
        self._identity_version += 1
        self._auth_sent = (auth.generation, self._identity_version)
        return authenticate_frame(base, auth.token_type, auth.value)

    # -- the connection --------------------------------------------------------------

    def _handshake(self, conn: Connection) -> None:
        """Replay this client's state onto a new connection."""
        self._conn = conn
        frames = [
            connect_frame(
                session_id=self._session_id,
                connection_count=self._connection_count,
                last_close_reason=self._last_close_reason,
                max_observed_ts=self._max_observed_ts or None,
                client_ts_ms=int(time.time() * 1000),
            )
        ]
        self._connection_count += 1
        self._remote = INITIAL_VERSION
        self._identity_version = 0
        self._auth_sent = None
        if self._auth is not None:
            frames.append(self._authenticate(self._auth))
        self._query_set_version = 1
        frames.append(
            modify_query_set_frame(
                0,
                1,
                [add_query(q.query_id, q.path, q.args_json) for q in self._queries.values()],
            )
        )
        for frame in frames:
            conn.send(frame)
        self._requests.resend(conn)

    def _disconnected(self, reason: str) -> None:
        self._conn = None
        self._last_close_reason = reason
        self._requests.connection_lost(reason)

    def _fail_everything(self, error: ClientError, *, end_subscriptions: bool) -> None:
        self._requests.fail(error)
        for _, waiter in self._auth_waiters:
            settle_error(waiter, error)
        self._auth_waiters.clear()
        for query in self._queries.values():
            for subscription in list(query.subscribers):
                subscription._finish(None if end_subscriptions else error)
        self._queries.clear()
        self._queries_by_id.clear()

    # -- incoming messages -----------------------------------------------------------

    def _handle(self, conn: Connection, message: ServerMessage | None) -> None:
        if isinstance(message, Transition):
            self._apply_transition(message)
        elif isinstance(message, FunctionResponse):
            self._apply_response(conn, message)
        elif isinstance(message, AuthError):
            self._auth_failed(message)
        elif isinstance(message, FatalError):
            raise ProtocolError(f"the server reported a fatal error: {message.message}")
        elif isinstance(message, Ping):
            pass

    def _apply_transition(self, transition: Transition) -> None:
        if transition.start != self._remote:
            raise ProtocolError(
                f"Transition starts at {transition.start}, but the client is at {self._remote}"
            )
        changed: list[Query] = []
        for mod in transition.modifications:
            if isinstance(mod, QueryRemoved):
                continue
            query = self._queries_by_id.get(mod.query_id)
            if query is None:
                continue  # removed locally since; the server will drop it too
            _log_lines(query.path, mod.log_lines)
            query.outcome = Outcome.from_result(mod, query.path)
            changed.append(query)
        self._remote = transition.end
        self._max_observed_ts = max(self._max_observed_ts, transition.end.ts)
        # Everything below happens before any awaiting caller resumes, so a caller
        # whose mutation resolves here finds its subscriptions already updated.
        for query in changed:
            assert query.outcome is not None
            for subscription in list(query.subscribers):
                subscription._offer(query.outcome)
        self._requests.resolve_through(transition.end.ts)
        if self._auth_sent is not None and transition.end.identity >= self._auth_sent[1]:
            accepted = self._auth_sent[0]
            remaining = []
            for generation, waiter in self._auth_waiters:
                if generation <= accepted:
                    settle_value(waiter, None)
                else:
                    remaining.append((generation, waiter))
            self._auth_waiters = remaining
        self._ready.set()

    def _apply_response(self, conn: Connection, response: FunctionResponse) -> None:
        request = self._requests.respond(conn, response, remote_ts=self._remote.ts)
        if request is None:
            return
        _log_lines(request.path, response.log_lines)
        if response.ts is not None:
            self._max_observed_ts = max(self._max_observed_ts, response.ts)

    def _auth_failed(self, message: AuthError) -> None:
        error = ClientError(f"the server rejected the credentials: {message.message}")
        sent = self._auth_sent[0] if self._auth_sent is not None else 0
        if self._auth is not None and self._auth.generation <= sent:
            # The server closes the connection; reconnect without the bad credentials.
            self._auth = None
        remaining = []
        for generation, waiter in self._auth_waiters:
            if generation <= sent:
                settle_error(waiter, error)
            else:
                remaining.append((generation, waiter))
        self._auth_waiters = remaining
        if not self._ready.is_set():
            self._startup_failure = error
            self._ready.set()
        log.warning("%s", error.message)


def _log_lines(path: str, lines: tuple[str, ...]) -> None:
    for line in lines:
        log.info("[%s] %s", path, line)


__all__ = ["Session"]
