"""Composition root of the sync service: sessions, subscriptions and functions.

    python services/sync/main.py --app APP_DIR --pg-dsn DSN --zk-hosts HOSTS [--port P]

Every flag can also come from the environment (``SYNCLINE_<NAME>``, named in each
flag's help); flags win. The admin secret comes only from the environment
(``SYNCLINE_ADMIN_SECRET``, hex), so it never shows in a process listing.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from syncline.cluster import SyncConfig, SyncNode, run_until_signalled
from syncline.storage import PostgresStorage


def _env(name: str) -> str | None:
    """The only place this service reads the environment."""
    return os.environ.get(f"SYNCLINE_{name}")


def _admin_secret(parser: argparse.ArgumentParser) -> bytes | None:
    text = _env("ADMIN_SECRET")
    if not text:
        return None
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) < 32:
        parser.error("SYNCLINE_ADMIN_SECRET must be at least 32 bytes as hex (64 digits)")
    return secret


def load_config(argv: list[str] | None = None) -> tuple[SyncConfig, str]:
    parser = argparse.ArgumentParser(prog="syncline-sync", description=__doc__.splitlines()[0])
    parser.add_argument("--app", default=_env("APP_DIR"), help="app directory (SYNCLINE_APP_DIR)")
    parser.add_argument(
        "--pg-dsn", default=_env("PG_DSN"), help="the region's PostgreSQL DSN (SYNCLINE_PG_DSN)"
    )
    parser.add_argument(
        "--zk-hosts", default=_env("ZK_HOSTS"), help="ZooKeeper hosts[/chroot] (SYNCLINE_ZK_HOSTS)"
    )
    parser.add_argument(
        "--host",
        default=_env("SYNC_HOST") or "127.0.0.1",
        help="gRPC interface (SYNCLINE_SYNC_HOST)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(_env("SYNC_PORT") or 0),
        help="gRPC port, 0 picks one (SYNCLINE_SYNC_PORT)",
    )
    parser.add_argument(
        "--http-port",
        type=int,
        default=int(_env("SYNC_HTTP_PORT") or 0) or None,
        help="HTTP /healthz and /readyz port; none by default (SYNCLINE_SYNC_HTTP_PORT)",
    )
    parser.add_argument(
        "--advertise-host",
        default=_env("SYNC_ADVERTISE_HOST"),
        help="host gateways use to reach this node (SYNCLINE_SYNC_ADVERTISE_HOST)",
    )
    parser.add_argument(
        "--region", default=_env("REGION") or "local", help="region served (SYNCLINE_REGION)"
    )
    parser.add_argument(
        "--session-timeout",
        type=float,
        default=float(_env("ZK_SESSION_TIMEOUT") or 6.0),
        help="ZooKeeper session timeout in seconds (SYNCLINE_ZK_SESSION_TIMEOUT)",
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=float(_env("SYNC_POLL_INTERVAL") or 1.0),
        help="seconds between fallback polls of the commit log (SYNCLINE_SYNC_POLL_INTERVAL)",
    )
    args = parser.parse_args(argv)
    missing = [
        flag
        for flag, value in (
            ("--app", args.app),
            ("--pg-dsn", args.pg_dsn),
            ("--zk-hosts", args.zk_hosts),
        )
        if not value
    ]
    if missing:
        parser.error(f"missing {', '.join(missing)} (or the SYNCLINE_* environment variables)")
    config = SyncConfig(
        app_dir=Path(args.app),
        zk_hosts=args.zk_hosts,
        host=args.host,
        port=args.port,
        http_port=args.http_port,
        advertise_host=args.advertise_host,
        region=args.region,
        session_timeout_seconds=args.session_timeout,
        poll_interval_seconds=args.poll_interval,
        admin_secret=_admin_secret(parser),
    )
    return config, args.pg_dsn


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config, dsn = load_config(argv)
    asyncio.run(run_until_signalled(SyncNode(config, PostgresStorage(dsn))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
