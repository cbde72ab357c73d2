"""Running one cluster node as a process: start, serve until signalled, shut down."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from syncline._errors import ConfigError
from syncline.cluster._tls import ServiceTls, tls_from_flags
from syncline.telemetry import CONTENT_TYPE, configure_logging, configure_metrics, configured

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class NodeConfig:
    """What every node that runs the app takes (txn, sync): where it serves and registers."""

    app_dir: Path
    """The app (modules, ``schema.py``, ``auth_config.py``)."""
    zk_hosts: str
    """ZooKeeper connection string, optionally with a chroot: ``host:port/chroot``."""
    host: str = "127.0.0.1"
    """Interface for the gRPC server (and the HTTP health server)."""
    port: int = 0
    """gRPC port (0-65535); 0 picks a free one."""
    http_port: int | None = None
    """Port for HTTP ``/healthz`` and ``/readyz``; None: no HTTP server, 0: a free one."""
    advertise_host: str | None = None
    """Host name other services use to reach this node (default: ``host``)."""
    session_timeout_seconds: float = 6.0
    """ZooKeeper session timeout (> 0): a dead node is noticed within about this long."""
    tls: ServiceTls | None = None
    """mTLS with the other services (None: plaintext, for a trusted network only)."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0-65535, got {self.port}")
        if not self.session_timeout_seconds > 0:
            raise ConfigError(
                f"session_timeout_seconds must be > 0, got {self.session_timeout_seconds}"
            )


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


async def metrics_endpoint(request: web.Request) -> web.Response:
    """``GET /metrics``: this process's metrics for Prometheus."""
    telemetry = configured()
    if telemetry is None:
        return web.Response(status=404, text="metrics are not configured in this process\n")
    return web.Response(body=telemetry.exposition(), headers={"Content-Type": CONTENT_TYPE})


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
    app.router.add_get("/metrics", metrics_endpoint)
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
    tls_arguments(parser, env)
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


def tls_arguments(parser: argparse.ArgumentParser, env: Callable[[str], str | None]) -> None:
    """``--tls-cert``, ``--tls-key`` and ``--tls-ca``: mTLS between services."""
    for name, what in (
        ("cert", "this service's certificate (PEM; common name: its role)"),
        ("key", "its private key (PEM)"),
        ("ca", "the CA that signs every service's certificate (PEM)"),
    ):
        parser.add_argument(
            f"--tls-{name}",
            default=env(f"TLS_{name.upper()}"),
            metavar="FILE",
            help=f"{what}; mTLS between services (SYNCLINE_TLS_{name.upper()})",
        )


def node_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The NodeConfig fields from the flags ``service_arguments`` added."""
    return {
        "app_dir": Path(args.app),
        "zk_hosts": args.zk_hosts,
        "host": args.host,
        "port": args.port,
        "http_port": args.http_port,
        "advertise_host": args.advertise_host,
        "session_timeout_seconds": args.session_timeout,
        "tls": tls_from_flags(args.tls_cert, args.tls_key, args.tls_ca),
    }


def run_service(node: ServiceNode) -> int:
    """A service process's main: log to stderr, serve until signalled; the exit code."""
    try:
        configure_logging(node.kind, node.identifier)
    except ConfigError as exc:
        print(f"syncline {node.kind}: {exc.message}", file=sys.stderr)
        return 2
    configure_metrics(node.kind, node.identifier)
    asyncio.run(run_until_signalled(node))
    return 0


def require_service_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit with a usage error naming the required flags that are missing."""
    required = (("--app", args.app), ("--pg-dsn", args.pg_dsn), ("--zk-hosts", args.zk_hosts))
    missing = [flag for flag, value in required if not value]
    if missing:
        parser.error(f"missing {', '.join(missing)} (or the SYNCLINE_* environment variables)")
