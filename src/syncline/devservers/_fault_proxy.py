"""A TCP proxy that injects network faults: delay, blackhole, one-way loss, resets.

The kernel here has no ``netem``, so links between regions (replication,
commits to the primary, ZooKeeper) are routed through this proxy when a test or
a local cluster wants a real delay or a real partition. Faults apply to every
connection through the proxy, live:

- ``delay_ms``: each chunk is delivered that long after it arrived, in order,
  both ways (a round trip costs twice the delay);
- ``hold``: nothing moves either way until it is lifted, and nothing is lost,
  as in a partition that TCP rides out (connections stall, peers time out on
  their own);
- ``drop``: ``"upstream"`` loses what clients send, ``"downstream"`` what the
  server sends (one-way loss), ``"both"`` is a blackhole; connections stay open
  but the bytes are gone, as if a middlebox ate them;
- ``reset()``: aborts every connection (RST), as a crashed middlebox would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Literal

log = logging.getLogger(__name__)

Drop = Literal["none", "upstream", "downstream", "both"]
_CHUNK = 65536


class FaultProxy:
    """Forwards ``127.0.0.1:port`` to ``upstream_host:upstream_port``."""

    def __init__(self, upstream_port: int, *, upstream_host: str = "127.0.0.1", port: int = 0):
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.port = port
        self.delay_ms = 0.0
        self.drop: Drop = "none"
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._transports: set[asyncio.WriteTransport] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.reset()
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=5)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def hold(self) -> bool:
        return not self._flowing.is_set()

    @hold.setter
    def hold(self, value: bool) -> None:
        if value:
            self._flowing.clear()
        else:
            self._flowing.set()

    def heal(self) -> None:
        """No delay, nothing held or dropped."""
        self.delay_ms = 0.0
        self.drop = "none"
        self.hold = False

    def reset(self) -> None:
        """Abort every connection now (the peers see a reset)."""
        for transport in list(self._transports):
            transport.abort()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        client = writer.transport
        self._transports.add(client)
        try:
            try:
                up_reader, up_writer = await asyncio.open_connection(
                    self.upstream_host, self.upstream_port
                )
            except OSError as exc:
                log.debug("fault proxy: upstream %s refused: %r", self.upstream_port, exc)
                return
            upstream = up_writer.transport
            self._transports.add(upstream)
            try:
                async with asyncio.TaskGroup() as pumps:
                    pumps.create_task(self._pump(reader, up_writer, "upstream"))
                    pumps.create_task(self._pump(up_reader, writer, "downstream"))
            except* (ConnectionError, OSError):
                pass
            finally:
                self._transports.discard(upstream)
                upstream.abort()
        finally:
            self._transports.discard(client)
            client.abort()
            self._connections.discard(task)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: Drop
    ) -> None:
        """Copy one direction, applying the faults set when each chunk arrives."""
        due: deque[tuple[float, bytes]] = deque()
        arrived = asyncio.Event()
        finished = False

        async def deliver() -> None:
            while True:
                while not due:
                    if finished:
                        return
                    arrived.clear()
                    await arrived.wait()
                at, data = due[0]
                wait = at - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self._flowing.wait()
                due.popleft()
                writer.write(data)
                await writer.drain()

        sender = asyncio.create_task(deliver())
        try:
            while True:
                await self._flowing.wait()
                data = await reader.read(_CHUNK)
                if not data:
                    break
                if self.drop in (direction, "both"):
                    continue
                due.append((time.monotonic() + self.delay_ms / 1000.0, data))
                arrived.set()
            finished = True
            arrived.set()
            await sender
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                await sender
        # The sender closed its side: close ours, which ends the other pump too.
        with contextlib.suppress(ConnectionError, OSError):
            writer.write_eof() if writer.can_write_eof() else writer.close()
