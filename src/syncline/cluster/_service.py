"""Running one cluster node as a process: start, serve until signalled, shut down."""

from __future__ import annotations

import argparse
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


def service_arguments(
    parser: argparse.ArgumentParser, *, service: str, env: Callable[[str], str | None]
) -> None:
    """The flags every cluster service takes; each defaults from ``SYNCLINE_<NAME>``.

    ``service`` ("TXN", "SYNC") prefixes the per-service variables (``SYNCLINE_TXN_PORT``).
    """
    parser.add_argument("--app", default=env("APP_DIR"), help="app directory (SYNCLINE_APP_DIR)")
    parser.add_argument("--pg-dsn", default=env("PG_DSN"), help="PostgreSQL DSN (SYNCLINE_PG_DSN)")
    parser.add_argument(
        "--zk-hosts", default=env("ZK_HOSTS"), help="ZooKeeper hosts[/chroot] (SYNCLINE_ZK_HOSTS)"
    )
    parser.add_argument(
        "--host", default=env(f"{service}_HOST") or "127.0.0.1", help="gRPC interface"
    )
    parser.add_argument(
        "--port", type=int, default=int(env(f"{service}_PORT") or 0), help="gRPC port; 0 picks one"
    )
    parser.add_argument(
        "--http-port",
        type=int,
        default=int(env(f"{service}_HTTP_PORT") or 0) or None,
        help="HTTP /healthz and /readyz port; none by default",
    )
    parser.add_argument(
        "--advertise-host",
        default=env(f"{service}_ADVERTISE_HOST"),
        help="host other services use to reach this one (default: --host)",
    )
    parser.add_argument(
        "--session-timeout",
        type=float,
        default=float(env("ZK_SESSION_TIMEOUT") or 6.0),
        help="ZooKeeper session timeout in seconds; bounds failover time",
    )


def require_service_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit with a usage error naming the required flags that are missing."""
    required = (("--app", args.app), ("--pg-dsn", args.pg_dsn), ("--zk-hosts", args.zk_hosts))
    missing = [flag for flag, value in required if not value]
    if missing:
        parser.error(f"missing {', '.join(missing)} (or the SYNCLINE_* environment variables)")
