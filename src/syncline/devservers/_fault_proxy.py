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

import argparse
import asyncio
import contextlib
import logging
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import IO, Literal

import aiohttp
from aiohttp import web

from syncline._errors import ConfigError
from syncline.devservers._process import PidFileServer, clean_environment, spawn

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


# -- as a process, controlled over HTTP ------------------------------------------------------


def control_app(proxy: FaultProxy) -> web.Application:
    """``GET /faults`` the current faults; ``POST /faults`` sets any of ``delay_ms``,
    ``hold``, ``drop``; ``POST /heal`` clears them; ``POST /reset`` aborts connections."""

    def state() -> web.Response:
        return web.json_response(
            {"delay_ms": proxy.delay_ms, "hold": proxy.hold, "drop": proxy.drop}
        )

    async def get_faults(request: web.Request) -> web.Response:
        return state()

    async def set_faults(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            delay = float(body.get("delay_ms", proxy.delay_ms))
            hold = body.get("hold", proxy.hold)
            drop = body.get("drop", proxy.drop)
        except (ValueError, TypeError, AttributeError):
            return web.json_response({"error": "expected a JSON object"}, status=400)
        if not 0 <= delay <= 60_000 or not isinstance(hold, bool) or drop not in _DROPS:
            return web.json_response(
                {"error": f"delay_ms 0-60000, hold true/false, drop one of {sorted(_DROPS)}"},
                status=400,
            )
        proxy.delay_ms, proxy.hold, proxy.drop = delay, hold, drop
        return state()

    async def heal(request: web.Request) -> web.Response:
        proxy.heal()
        return state()

    async def reset(request: web.Request) -> web.Response:
        proxy.reset()
        return state()

    app = web.Application()
    app.router.add_get("/faults", get_faults)
    app.router.add_post("/faults", set_faults)
    app.router.add_post("/heal", heal)
    app.router.add_post("/reset", reset)
    return app


_DROPS = frozenset({"none", "upstream", "downstream", "both"})


async def _serve(args: argparse.Namespace) -> None:
    host, _, port = args.upstream.rpartition(":")
    proxy = FaultProxy(int(port), upstream_host=host or "127.0.0.1", port=args.port)
    proxy.delay_ms = args.delay_ms
    await proxy.start()
    runner = web.AppRunner(control_app(proxy), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.control_port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"fault proxy 127.0.0.1:{proxy.port} -> {args.upstream}", flush=True)
    await stop.wait()
    await runner.cleanup()
    await proxy.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m syncline.devservers._fault_proxy --port P --upstream H:P --control-port C``."""
    parser = argparse.ArgumentParser(description="A TCP proxy that injects network faults.")
    parser.add_argument("--port", type=int, required=True, help="port to listen on (127.0.0.1)")
    parser.add_argument("--upstream", required=True, help="host:port to forward to")
    parser.add_argument("--control-port", type=int, required=True, help="HTTP control port")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="initial delay each way")
    asyncio.run(_serve(parser.parse_args(argv)))
    return 0


class LocalFaultProxy(PidFileServer):
    """A fault proxy process (a link between regions), with its pid file and log."""

    _name = "fault proxy"
    _marker = "syncline.devservers._fault_proxy"

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int,
        upstream: str,
        control_port: int,
        delay_ms: float = 0.0,
        label: str = "fault proxy",
    ) -> None:
        """``label``: what progress and error messages call it (e.g. "link eu-west/txn0")."""
        super().__init__(data_dir, port=port, start_timeout_seconds=30.0, stop_timeout_seconds=10.0)
        self._name = label
        self.upstream = upstream
        self.control_port = control_port
        self._delay_ms = delay_ms

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._port}"

    @property
    def log_file(self) -> Path:
        return self._data_dir / "proxy.log"

    @property
    def _pid_file(self) -> Path:
        return self._data_dir / "proxy.pid"

    def _prepare(self) -> None:
        self._data_dir.mkdir(parents=True, exist_ok=True)

    def _spawn(self, log: IO[bytes]) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", self._marker, "--port", str(self._port)]
        argv += ["--upstream", self.upstream, "--control-port", str(self.control_port)]
        argv += ["--delay-ms", str(self._delay_ms)]
        return spawn(argv, log=log, cwd=self._data_dir, env=clean_environment())

    async def _ready(self) -> bool:
        try:
            await self.faults()
        except (aiohttp.ClientError, OSError):
            return False
        return True

    async def faults(self, **changes: object) -> dict[str, object]:
        """The faults now; with ``changes`` (delay_ms, hold, drop), set them first."""
        url = f"http://127.0.0.1:{self.control_port}/faults"
        async with aiohttp.ClientSession() as http:
            if changes:
                async with http.post(url, json=changes) as response:
                    body: dict[str, object] = await response.json()
                    if response.status != 200:
                        raise ConfigError(str(body.get("error")))
                    return body
            async with http.get(url) as response:
                result: dict[str, object] = await response.json()
                return result

    async def control(self, action: str) -> None:
        """``heal`` or ``reset``."""
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"http://127.0.0.1:{self.control_port}/{action}") as response,
        ):
            response.raise_for_status()


if __name__ == "__main__":
    sys.exit(main())
