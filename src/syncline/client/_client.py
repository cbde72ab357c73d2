"""The native async Python client, over Convex's WebSocket sync protocol.

One background task owns the connection: it connects, replays the client's
state (identity, query set, unresolved requests) onto each new connection, and
reconnects with jittered exponential backoff when the socket drops. Each
connection has a writer task draining an outbox, so frames leave in the order
the client's state changed.

Guarantees, as in Convex's own clients:

- A successful mutation resolves only once a Transition reaching its commit ts
  has been applied, so every subscription already reflects it (read-your-writes).
- Mutations survive reconnects: unresolved ones are resent with the same request
  id, and the server applies each (session id, request id) once.
- Actions run at most once: one in flight when the connection drops fails with
  :class:`ConnectionLostError`; one not yet sent waits for the next connection.
- The queries of one Transition are delivered together, all at one ts.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import aiohttp

from syncline._errors import ProtocolError
from syncline.client._errors import ClientError, ConnectionLostError, FunctionError
from syncline.client._protocol import (
    INITIAL_VERSION,
    AuthError,
    FatalError,
    FunctionResponse,
    JsonObject,
    Ping,
    QueryRemoved,
    QueryResult,
    RequestKind,
    TokenType,
    Transition,
    add_query,
    authenticate_frame,
    connect_frame,
    modify_query_set_frame,
    parse_server_message,
    remove_query,
    request_frame,
)
from syncline.functions import FunctionRef, resolve_reference
from syncline.values import Value, json_dumps_canonical, to_json, values_equal

log = logging.getLogger(__name__)

#: Largest server frame accepted; a Transition carries every changed result at once.
MAX_SERVER_FRAME_BYTES = 256 * 1024 * 1024
#: How long closing a WebSocket waits for the server's close frame.
WS_CLOSE_TIMEOUT_SECONDS = 2.0
#: Mutations sent and not yet answered, at most. The server runs a session's
#: mutations one at a time and ends a session that queues more than 1024; past
#: this window, mutations wait (in order) on the client.
MAX_MUTATIONS_IN_FLIGHT = 256


class ClientState(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class _RequestStatus(enum.Enum):
    NOT_SENT = "not sent"
    SENT = "sent"
    AWAITING_TS = "awaiting ts"
    """The mutation committed; it resolves when a Transition reaches its ts."""


@dataclass(eq=False)
class _Request:
    request_id: int
    kind: RequestKind
    path: str
    frame: str
    future: asyncio.Future[Value]
    status: _RequestStatus = _RequestStatus.NOT_SENT
    ever_sent: bool = False
    """Sent on some connection: it may have run, so it is never silently dropped."""
    value: Value = None
    ts: int = 0


@dataclass(frozen=True)
class _Outcome:
    """A query's latest result, as subscribers receive it."""

    value: Value
    error: FunctionError | None

    def same_as(self, other: _Outcome) -> bool:
        if self.error is None and other.error is None:
            return values_equal(self.value, other.value)
        if self.error is None or other.error is None:
            return False
        return self.error.message == other.error.message and values_equal(
            self.error.data, other.error.data
        )


@dataclass(eq=False)
class _Query:
    query_id: int
    token: str
    path: str
    args_json: JsonObject
    subscribers: set[Subscription] = field(default_factory=set)
    outcome: _Outcome | None = None


@dataclass(frozen=True)
class _Auth:
    token_type: TokenType
    value: str | None
    generation: int
    """Counts set_auth calls, so a waiter knows whether its token was the one sent."""


@dataclass(eq=False)
class _Connection:
    """One WebSocket connection and the frames queued for it."""

    ws: aiohttp.ClientWebSocketResponse
    number: int
    outbox: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    transitions: int = 0

    def send(self, frame: str) -> None:
        self.outbox.put_nowait(frame)


class Subscription:
    """Results of one query, as an async iterator; from :meth:`Client.subscribe`.

    Yields the current result first, then each result that differs from the one
    last yielded. A slow consumer skips intermediate results and receives the
    latest. A failed query raises :class:`FunctionError` from the iterator (the
    subscription stays usable and yields again when the query recovers). Iteration
    ends when the subscription or the client is closed.
    """

    def __init__(self, client: Client, query: _Query) -> None:
        self._client = client
        self._query = query
        self._pending: _Outcome | None = None
        self._last: _Outcome | None = None
        self._closed = False
        self._failure: ClientError | None = None
        self._wakeup = asyncio.Event()

    @property
    def path(self) -> str:
        """The query's path (``module:name``)."""
        return self._query.path

    def _offer(self, outcome: _Outcome) -> None:
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
        self._client._remove_subscriber(self._query, self)

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


class Client:
    """An async client of a Syncline (or Convex) deployment over the sync protocol::

        async with Client("http://127.0.0.1:3210") as client:
            room = await client.mutation("rooms:create", {"name": "general"})
            async with client.subscribe("messages:list", {"roomId": room}) as messages:
                async for page in messages:
                    ...

    Functions are named by ``"module:name"`` strings or by references such as
    ``api.messages.list``. Arguments and results are Convex values (``int`` is
    int64, ``float`` is float64, ``bytes`` are bytes); results are typed ``Any``
    because their shape is the function's to decide.
    """

    def __init__(
        self,
        url: str,
        *,
        admin_key: str | None = None,
        reconnect_backoff_seconds: tuple[float, float] = (0.05, 5.0),
        connect_timeout_seconds: float = 10.0,
        inactivity_timeout_seconds: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        """
        Args:
            url: the deployment's URL (``http(s)://`` or ``ws(s)://``).
            admin_key: authenticate as an admin (may call internal functions) until
                :meth:`set_auth` replaces it.
            reconnect_backoff_seconds: ``(first, maximum)`` delay before reconnecting;
                it doubles per failed attempt, with jitter, and resets once a
                connection is established. ``0 < first <= maximum``.
            connect_timeout_seconds: how long :meth:`connect` and each connection
                attempt wait for the server (> 0).
            inactivity_timeout_seconds: a connection silent for this long is taken
                as dead and replaced; the server pings every 15 seconds (> 0).
            rng: randomness for the jitter (tests pass a seeded one).
        """
        first, maximum = reconnect_backoff_seconds
        if not 0 < first <= maximum:
            raise ValueError(
                "reconnect_backoff_seconds must be (first, maximum), 0 < first <= maximum"
            )
        if connect_timeout_seconds <= 0 or inactivity_timeout_seconds <= 0:
            raise ValueError("timeouts must be positive")
        self.url = url.rstrip("/")
        self._ws_url = _sync_url(self.url)
        self._backoff = (first, maximum)
        self._connect_timeout = connect_timeout_seconds
        self._inactivity_timeout = inactivity_timeout_seconds
        self._rng = rng or random.Random()
        self._state = ClientState.NEW
        self._http: aiohttp.ClientSession | None = None
        self._runner: asyncio.Task[None] | None = None
        self._conn: _Connection | None = None
        self._ready = asyncio.Event()
        """Set by the first Transition (or by a failure before it)."""
        self._startup_failure: ClientError | None = None
        self._failure: ClientError | None = None
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
        self._queries: dict[str, _Query] = {}
        self._queries_by_id: dict[int, _Query] = {}
        self._next_query_id = 0
        self._query_set_version = 0
        self._requests: dict[int, _Request] = {}
        self._unsent: collections.deque[_Request] = collections.deque()
        """Requests waiting to be sent on this connection, in request id order."""
        self._mutations_in_flight = 0
        self._next_request_id = 0

    # -- lifecycle -------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect and wait until the server has accepted the session (and its auth).

        Raises :class:`ConnectionLostError` if the server cannot be reached within
        ``connect_timeout_seconds``, :class:`ClientError` if it rejects the admin key.
        The client is closed when this raises.
        """
        if self._state is ClientState.CLOSED:
            raise ClientError("the client is closed; create a new one")
        if self._state is ClientState.OPEN:
            return
        self._state = ClientState.OPEN
        self._http = aiohttp.ClientSession()
        self._runner = asyncio.create_task(self._run(), name=f"syncline-client-run {self.url}")
        self._runner.add_done_callback(self._runner_done)
        try:
            async with asyncio.timeout(self._connect_timeout):
                await self._ready.wait()
        except TimeoutError:
            await self.close()
            raise ConnectionLostError(
                f"could not connect to {self._ws_url} within {self._connect_timeout} seconds"
            ) from None
        except BaseException:
            await self.close()
            raise
        failure = self._startup_failure or self._failure
        if failure is not None:
            await self.close()
            raise failure

    async def close(self) -> None:
        """Close the connection; pending calls fail, subscriptions stop. Idempotent."""
        if self._state is ClientState.CLOSED:
            return
        self._state = ClientState.CLOSED
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            await asyncio.wait({runner})
        self._fail_everything(ClientError("the client was closed"), end_subscriptions=True)
        http, self._http = self._http, None
        if http is not None:
            await http.close()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        """Whether a connection is currently open."""
        return self._conn is not None

    # -- functions -------------------------------------------------------------------

    async def query(self, path: FunctionRef, args: Mapping[str, Any] | None = None) -> Any:
        """Run a query once and return its result.

        The result is at least as new as every mutation this client has completed.
        Raises :class:`FunctionError` if the query fails.
        """
        subscription = self.subscribe(path, args)
        try:
            return await anext(subscription)
        except StopAsyncIteration:
            raise ClientError("the client was closed before the query returned") from None
        finally:
            subscription.close()

    async def mutation(self, path: FunctionRef, args: Mapping[str, Any] | None = None) -> Any:
        """Run a mutation; returns once every subscription of this client reflects it.

        Retried across reconnects (applied exactly once). Raises :class:`FunctionError`
        if the mutation fails.
        """
        return await self._request(RequestKind.MUTATION, path, args)

    async def action(self, path: FunctionRef, args: Mapping[str, Any] | None = None) -> Any:
        """Run an action. Raises :class:`FunctionError` if it fails, and
        :class:`ConnectionLostError` if the connection drops while it runs."""
        return await self._request(RequestKind.ACTION, path, args)

    def subscribe(self, path: FunctionRef, args: Mapping[str, Any] | None = None) -> Subscription:
        """Subscribe to a query's results; see :class:`Subscription`.

        Identical subscriptions (same path and arguments) share one server query.
        Close the subscription (or use it as ``async with``) to stop it.
        """
        self._check_open()
        canonical = resolve_reference(path)
        args_json = _encode_args(args)
        token = f"{canonical}|{json_dumps_canonical(args_json)}"
        query = self._queries.get(token)
        if query is None:
            query = _Query(self._next_query_id, token, canonical, args_json)
            self._next_query_id += 1
            self._queries[token] = query
            self._queries_by_id[query.query_id] = query
            self._modify_query_set([add_query(query.query_id, canonical, args_json)])
        subscription = Subscription(self, query)
        query.subscribers.add(subscription)
        if query.outcome is not None:
            subscription._offer(query.outcome)
        return subscription

    async def set_auth(self, token: str | None) -> None:
        """Authenticate as the user of this JWT (None: anonymous) from now on.

        Returns once the server has accepted the identity; every subscription is
        then re-run for it. Raises :class:`ClientError` if the server rejects the
        token, after which the client carries on anonymously.
        """
        self._check_open()
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
        await waiter

    # -- client state ----------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state is ClientState.NEW:
            raise ClientError("the client is not connected; use `async with Client(...)`")
        if self._failure is not None:
            raise self._failure
        if self._state is ClientState.CLOSED:
            raise ClientError("the client is closed")

    async def _request(
        self, kind: RequestKind, path: FunctionRef, args: Mapping[str, Any] | None
    ) -> Any:
        self._check_open()
        canonical = resolve_reference(path)
        request_id = self._next_request_id
        self._next_request_id += 1
        request = _Request(
            request_id,
            kind,
            canonical,
            request_frame(kind, request_id, canonical, _encode_args(args)),
            asyncio.get_running_loop().create_future(),
        )
        self._requests[request_id] = request
        self._unsent.append(request)
        self._send_requests()
        return await request.future

    def _send_requests(self) -> None:
        """Send waiting requests in order, within the window of mutations in flight."""
        conn = self._conn
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
            request.status = _RequestStatus.SENT
            request.ever_sent = True
            conn.send(request.frame)

    def _remove_subscriber(self, query: _Query, subscription: Subscription) -> None:
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

    def _authenticate(self, auth: _Auth) -> str:
        base = self._identity_version
        self._identity_version += 1
        self._auth_sent = (auth.generation, self._identity_version)
        return authenticate_frame(base, auth.token_type, auth.value)

    def _handshake(self, conn: _Connection) -> None:
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
        # Every unresolved mutation goes again: the server deduplicates by
        # (session id, request id) and answers with the original outcome. (Actions in
        # flight were failed when the last connection dropped.)
        for request in self._requests.values():
            request.status = _RequestStatus.NOT_SENT
        self._unsent = collections.deque(self._requests[i] for i in sorted(self._requests))
        self._mutations_in_flight = 0
        self._send_requests()

    def _disconnected(self, reason: str) -> None:
        self._conn = None
        self._last_close_reason = reason
        for request_id, request in list(self._requests.items()):
            if request.kind is RequestKind.ACTION and request.status is _RequestStatus.SENT:
                del self._requests[request_id]
                _settle_error(
                    request.future,
                    ConnectionLostError(
                        f"connection lost while action {request.path} was running ({reason}); "
                        "it ran at most once"
                    ),
                )

    def _fail_everything(self, error: ClientError, *, end_subscriptions: bool) -> None:
        for request in self._requests.values():
            _settle_error(request.future, error)
        self._requests.clear()
        self._unsent.clear()
        for _, waiter in self._auth_waiters:
            _settle_error(waiter, error)
        self._auth_waiters.clear()
        for query in self._queries.values():
            for subscription in list(query.subscribers):
                subscription._finish(None if end_subscriptions else error)
        self._queries.clear()
        self._queries_by_id.clear()

    # -- incoming messages -----------------------------------------------------------

    def _handle(self, conn: _Connection, message: object) -> None:
        if isinstance(message, Transition):
            self._apply_transition(message)
            conn.transitions += 1
        elif isinstance(message, FunctionResponse):
            self._apply_response(message)
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
        changed: list[_Query] = []
        for mod in transition.modifications:
            if isinstance(mod, QueryRemoved):
                continue
            query = self._queries_by_id.get(mod.query_id)
            if query is None:
                continue  # removed locally since; the server will drop it too
            _log_lines(query.path, mod.log_lines)
            query.outcome = _outcome(mod, query.path)
            changed.append(query)
        self._remote = transition.end
        self._max_observed_ts = max(self._max_observed_ts, transition.end.ts)
        # Everything below happens before any awaiting caller resumes, so a caller
        # whose mutation resolves here finds its subscriptions already updated.
        for query in changed:
            assert query.outcome is not None
            for subscription in list(query.subscribers):
                subscription._offer(query.outcome)
        for request_id, request in list(self._requests.items()):
            if request.status is _RequestStatus.AWAITING_TS and request.ts <= transition.end.ts:
                del self._requests[request_id]
                _settle_value(request.future, request.value)
        if self._auth_sent is not None and transition.end.identity >= self._auth_sent[1]:
            accepted = self._auth_sent[0]
            remaining = []
            for generation, waiter in self._auth_waiters:
                if generation <= accepted:
                    _settle_value(waiter, None)
                else:
                    remaining.append((generation, waiter))
            self._auth_waiters = remaining
        self._ready.set()

    def _apply_response(self, response: FunctionResponse) -> None:
        request = self._requests.get(response.request_id)
        if request is None or request.status is not _RequestStatus.SENT:
            return  # a resent request answered twice, or one already failed locally
        if request.kind is not response.kind:
            raise ProtocolError(
                f"{response.kind.value}Response for request {response.request_id}, "
                f"which is a {request.kind.value}"
            )
        _log_lines(request.path, response.log_lines)
        if request.kind is RequestKind.MUTATION:
            self._mutations_in_flight -= 1
            self._send_requests()
        if response.error_message is not None:
            del self._requests[response.request_id]
            _settle_error(
                request.future,
                FunctionError(response.error_message, data=response.error_data, path=request.path),
            )
            return
        if response.ts is not None:
            self._max_observed_ts = max(self._max_observed_ts, response.ts)
            if response.ts > self._remote.ts:
                request.status = _RequestStatus.AWAITING_TS
                request.value = response.value
                request.ts = response.ts
                return
        del self._requests[response.request_id]
        _settle_value(request.future, response.value)

    def _auth_failed(self, message: AuthError) -> None:
        error = ClientError(f"the server rejected the credentials: {message.message}")
        sent = self._auth_sent[0] if self._auth_sent is not None else 0
        if self._auth is not None and self._auth.generation <= sent:
            # The server closes the connection; reconnect without the bad credentials.
            self._auth = None
        remaining = []
        for generation, waiter in self._auth_waiters:
            if generation <= sent:
                _settle_error(waiter, error)
            else:
                remaining.append((generation, waiter))
        self._auth_waiters = remaining
        if not self._ready.is_set():
            self._startup_failure = error
            self._ready.set()
        log.warning("%s", error.message)

    # -- the connection --------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while True:
            assert self._http is not None
            try:
                async with asyncio.timeout(self._connect_timeout):
                    ws = await self._http.ws_connect(
                        self._ws_url,
                        autoping=True,
                        max_msg_size=MAX_SERVER_FRAME_BYTES,
                        timeout=aiohttp.ClientWSTimeout(ws_close=WS_CLOSE_TIMEOUT_SECONDS),
                    )
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                reason = f"connect failed: {type(exc).__name__}: {exc}"
            else:
                try:
                    reason, established = await self._serve(ws)
                finally:
                    await ws.close()
                if established:
                    attempt = 0
            delay = self._delay(attempt)
            attempt += 1
            log.info("sync connection to %s down (%s); retrying in %.2fs", self.url, reason, delay)
            await asyncio.sleep(delay)

    def _delay(self, attempt: int) -> float:
        first, maximum = self._backoff
        ceiling = min(maximum, first * 2.0 ** min(attempt, 32))
        # Jitter keeps many clients of a restarted server from reconnecting in lockstep.
        return ceiling * (0.5 + 0.5 * self._rng.random())

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> tuple[str, bool]:
        """Run one connection; returns why it ended and whether it was established."""
        conn = _Connection(ws, self._connection_count)
        self._handshake(conn)
        reason = "closed"
        try:
            async with asyncio.TaskGroup() as tasks:
                writer = tasks.create_task(
                    self._write(conn), name=f"syncline-client-writer {self.url} #{conn.number}"
                )
                try:
                    reason = await self._read(conn)
                finally:
                    writer.cancel()
        finally:
            self._disconnected(reason)
        return reason, conn.transitions > 0

    async def _read(self, conn: _Connection) -> str:
        ws = conn.ws
        while True:
            try:
                msg = await ws.receive(timeout=self._inactivity_timeout)
            except TimeoutError:
                return f"no message for {self._inactivity_timeout} seconds"
            if msg.type is aiohttp.WSMsgType.TEXT:
                try:
                    self._handle(conn, parse_server_message(msg.data))
                except ProtocolError as exc:
                    log.warning("sync protocol error from %s: %s", self.url, exc.message)
                    return exc.message
            elif msg.type is aiohttp.WSMsgType.ERROR:
                return f"connection error: {ws.exception()}"
            elif msg.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
            ):
                return f"closed by the server (code {ws.close_code}, {msg.extra or ''})".rstrip()
            else:
                return f"unexpected {msg.type.name} frame"

    async def _write(self, conn: _Connection) -> None:
        while True:
            frame = await conn.outbox.get()
            try:
                await conn.ws.send_str(frame)
            except (ConnectionError, aiohttp.ClientError) as exc:
                log.debug("send to %s failed: %s", self.url, exc)
                # Closing wakes the reader, which ends the connection.
                await conn.ws.close()
                return

    def _runner_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        log.error("the sync connection of %s failed", self.url, exc_info=exc)
        failure = ClientError(f"the client failed: {type(exc).__name__}: {exc}")
        failure.__cause__ = exc
        self._failure = failure
        self._conn = None
        self._fail_everything(failure, end_subscriptions=False)
        self._ready.set()


def _sync_url(url: str) -> str:
    for http, ws in (("https://", "wss://"), ("http://", "ws://")):
        if url.startswith(http):
            url = ws + url[len(http) :]
            break
    if not url.startswith(("ws://", "wss://")):
        raise ValueError(f"expected an http(s):// or ws(s):// URL, got {url!r}")
    return url if url.endswith("/api/sync") else url + "/api/sync"


def _encode_args(args: Mapping[str, Any] | None) -> JsonObject:
    if args is None:
        return {}
    if not isinstance(args, Mapping):
        raise ClientError(
            f"arguments must be a mapping of names to values, got {type(args).__name__}"
        )
    encoded: JsonObject = to_json(dict(args))
    return encoded


def _outcome(result: QueryResult, path: str) -> _Outcome:
    if result.error_message is None:
        return _Outcome(result.value, None)
    return _Outcome(None, FunctionError(result.error_message, data=result.error_data, path=path))


def _log_lines(path: str, lines: tuple[str, ...]) -> None:
    for line in lines:
        log.info("[%s] %s", path, line)


def _settle_value(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _settle_error(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


__all__ = ["Client", "ClientState", "Subscription"]
