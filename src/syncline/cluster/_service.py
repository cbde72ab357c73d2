"""Running one cluster node as a process: start, serve until signalled, shut down."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from typing import Any, Protocol

from aiohttp import web

log = logging.getLogger(__name__)


class ServiceNode(Protocol):
    """What a service's composition root runs (TxnNode, SyncNode)."""

    @property
    def kind(self) -> str:
        """The service's name in log lines: "txn", "sync"."""
        ...

    @property
    def identifier(self) -> str: ...

    @property
    def address(self) -> str: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


async def run_until_signalled(node: ServiceNode) -> None:
    """Serve until SIGTERM/SIGINT, then shut down in order."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await node.start()
    print(f"{node.kind} node {node.identifier} ready on {node.address}", flush=True)
    try:
        await stop.wait()
    finally:
        try:
            await node.close()
        except Exception:
            log.exception("%s node %s did not shut down cleanly", node.kind, node.identifier)


HealthBody = Callable[[], dict[str, Any]]


async def start_health_http(
    host: str, port: int, *, alive: HealthBody, ready: Callable[[], tuple[bool, dict[str, Any]]]
) -> web.AppRunner:
    """Serve ``/healthz`` (200 while the process runs) and ``/readyz`` (200 only when
    ``ready()`` says so, else 503) for Kubernetes probes. Returns the runner to clean up."""

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", **alive()})

    async def readyz(request: web.Request) -> web.Response:
        is_ready, body = ready()
        return web.json_response({"ready": is_ready, **body}, status=200 if is_ready else 503)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
