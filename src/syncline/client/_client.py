"""The native async Python client, over Convex's WebSocket sync protocol.

The :class:`Client` is the public face: lifecycle, calls and subscriptions. Its
session state lives in :class:`Session`, and a :class:`ConnectionRunner` task
keeps it connected, reconnecting with jittered exponential backoff.

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
import enum
import logging
import random
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

import aiohttp

from syncline.client._connection import Connection, ConnectionRunner, sync_url
from syncline.client._errors import ClientError, ConnectionLostError
from syncline.client._presence import Presence
from syncline.client._protocol import RequestKind
from syncline.client._session import Session
from syncline.client._subscription import Subscription
from syncline.functions import FunctionRef

log = logging.getLogger(__name__)


class ClientState(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class Client(Session):
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
        self._ws_url = sync_url(self.url)
        self._backoff = (first, maximum)
        self._connect_timeout = connect_timeout_seconds
        self._inactivity_timeout = inactivity_timeout_seconds
        self._rng = rng or random.Random()
        super().__init__(admin_key=admin_key)
        self._state = ClientState.NEW
        self._http: aiohttp.ClientSession | None = None
        self._runner: asyncio.Task[None] | None = None
        self._failure: ClientError | None = None
        self._rooms: list[Presence] = []

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
        runner = ConnectionRunner(
            url=self.url,
            ws_url=self._ws_url,
            http=self._http,
            connect_timeout_seconds=self._connect_timeout,
            inactivity_timeout_seconds=self._inactivity_timeout,
            retry_delay=self._delay,
            on_connect=self._connected,
            on_message=self._handle,
            on_disconnect=self._disconnected,
        )
        self._runner = asyncio.create_task(runner.run(), name=f"syncline-client-run {self.url}")
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
        return self._add_subscription(path, args)

    def presence(
        self,
        room: str,
        *,
        join: FunctionRef = "presence:join",
        leave: FunctionRef = "presence:leave",
    ) -> Presence:
        """This client's membership of presence ``room``, through the app's ``join``
        mutation (arguments ``room`` and ``state``) and ``leave`` mutation (``room``);
        see :class:`Presence`. Read the room by subscribing to the app's query of it.
        """
        self._check_open()
        presence = Presence(self, room, join=join, leave=leave, forget=self._rooms.remove)
        self._rooms.append(presence)
        return presence

    async def set_auth(self, token: str | None) -> None:
        """Authenticate as the user of this JWT (None: anonymous) from now on.

        Returns once the server has accepted the identity; every subscription is
        then re-run for it. Raises :class:`ClientError` if the server rejects the
        token, after which the client carries on anonymously.
        """
        self._check_open()
        await self._change_auth(token)

    # -- internals -------------------------------------------------------------------

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
        return await self._send_request(kind, path, args)

    def _connected(self, conn: Connection) -> None:
        again = self._connection_count > 0
        self._handshake(conn)
        if again:
            for presence in list(self._rooms):
                presence._reconnected()

    def _delay(self, attempt: int) -> float:
        first, maximum = self._backoff
        ceiling = min(maximum, first * 2.0 ** min(attempt, 32))
        # Jitter keeps many clients of a restarted server from reconnecting in lockstep.
        return ceiling * (0.5 + 0.5 * self._rng.random())

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


__all__ = ["Client", "ClientState"]
