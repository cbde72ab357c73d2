"""The client's WebSocket, kept up by one background task.

:class:`ConnectionRunner` connects, hands each new :class:`Connection` to the client
(which replays its state onto it), feeds the client the server's messages, and
reconnects after the client's backoff delay when the socket drops. Each connection
has a writer task draining an outbox, so frames leave in the order the client's
state changed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from syncline._errors import ProtocolError
from syncline.client._protocol import ServerMessage, Transition, parse_server_message

log = logging.getLogger(__name__)

#: Largest server frame accepted; a Transition carries every changed result at once.
MAX_SERVER_FRAME_BYTES = 256 * 1024 * 1024
#: How long closing a WebSocket waits for the server's close frame.
WS_CLOSE_TIMEOUT_SECONDS = 2.0


@dataclass(eq=False)
class Connection:
    """One WebSocket connection and the frames queued for it."""

    ws: aiohttp.ClientWebSocketResponse
    number: int
    outbox: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    transitions: int = 0

    def send(self, frame: str) -> None:
        self.outbox.put_nowait(frame)


class ConnectionRunner:
    """Keeps a client connected: connect, serve, and on a drop wait and reconnect.

    The callbacks run on the runner's task: ``on_connect`` with each new connection
    before any message is read from it, ``on_message`` with each message received
    (None for a type this client does not know; raising :class:`ProtocolError` ends
    the connection), and ``on_disconnect`` with the reason once a connection has
    ended. ``retry_delay(attempt)`` is the wait before the next attempt; ``attempt``
    restarts at 0 after a connection that received a Transition.
    """

    def __init__(
        self,
        *,
        url: str,
        ws_url: str,
        http: aiohttp.ClientSession,
        connect_timeout_seconds: float,
        inactivity_timeout_seconds: float,
        retry_delay: Callable[[int], float],
        on_connect: Callable[[Connection], None],
        on_message: Callable[[Connection, ServerMessage | None], None],
        on_disconnect: Callable[[str], None],
    ) -> None:
        self._url = url
        """The deployment's URL, as log messages and task names show it."""
        self._ws_url = ws_url
        self._http = http
        self._connect_timeout = connect_timeout_seconds
        self._inactivity_timeout = inactivity_timeout_seconds
        self._retry_delay = retry_delay
        self._on_connect = on_connect
        self._on_message = on_message
        self._on_disconnect = on_disconnect
        self._connections = 0

    async def run(self) -> None:
        """Connect and reconnect until cancelled; raises only what a callback raises."""
        attempt = 0
        while True:
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
            delay = self._retry_delay(attempt)
            attempt += 1
            log.info("sync connection to %s down (%s); retrying in %.2fs", self._url, reason, delay)
            await asyncio.sleep(delay)

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> tuple[str, bool]:
        """Run one connection; returns why it ended and whether it was established."""
        conn = Connection(ws, self._connections)
        self._connections += 1
        self._on_connect(conn)
        reason = "closed"
        try:
            async with asyncio.TaskGroup() as tasks:
                writer = tasks.create_task(
                    self._write(conn), name=f"syncline-client-writer {self._url} #{conn.number}"
                )
                try:
                    reason = await self._read(conn)
                finally:
                    writer.cancel()
        finally:
            self._on_disconnect(reason)
        return reason, conn.transitions > 0

    async def _read(self, conn: Connection) -> str:
        ws = conn.ws
        while True:
            try:
                msg = await ws.receive(timeout=self._inactivity_timeout)
            except TimeoutError:
                return f"no message for {self._inactivity_timeout} seconds"
            if msg.type is aiohttp.WSMsgType.TEXT:
                try:
                    message = parse_server_message(msg.data)
                    self._on_message(conn, message)
                except ProtocolError as exc:
                    log.warning("sync protocol error from %s: %s", self._url, exc.message)
                    return exc.message
                if isinstance(message, Transition):
                    conn.transitions += 1
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

    async def _write(self, conn: Connection) -> None:
        while True:
            frame = await conn.outbox.get()
            try:
                await conn.ws.send_str(frame)
            except (ConnectionError, aiohttp.ClientError) as exc:
                log.debug("send to %s failed: %s", self._url, exc)
                # Closing wakes the reader, which ends the connection.
                await conn.ws.close()
                return


def sync_url(url: str) -> str:
    """The sync endpoint's ``ws(s)://`` URL for a deployment's ``http(s)://`` URL."""
    for http, ws in (("https://", "wss://"), ("http://", "ws://")):
        if url.startswith(http):
            url = ws + url[len(http) :]
            break
    if not url.startswith(("ws://", "wss://")):
        raise ValueError(f"expected an http(s):// or ws(s):// URL, got {url!r}")
    return url if url.endswith("/api/sync") else url + "/api/sync"


__all__ = ["Connection", "ConnectionRunner", "sync_url"]
