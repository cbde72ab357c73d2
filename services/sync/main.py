"""Composition root of the sync service: sessions, subscriptions and functions.

    python services/sync/main.py --app APP_DIR --pg-dsn DSN --zk-hosts HOSTS [--port P]

Every flag can also come from the environment (``SYNCLINE_<NAME>``, named in each
flag's help); flags win. The admin secret comes only from the environment
(``SYNCLINE_ADMIN_SECRET``, hex), so it never shows in a process listing.
"""

from __future__ import annotations

import argparse
import os
import sys

from syncline.cluster import SyncConfig, SyncNode
from syncline.cluster._service import (
    node_settings,
    require_service_arguments,
    run_service,
    service_arguments,
)
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
    service_arguments(parser, service="SYNC", env=_env)
    parser.add_argument(
        "--region", default=_env("REGION") or "local", help="region served (SYNCLINE_REGION)"
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=float(_env("SYNC_POLL_INTERVAL") or 1.0),
        help="seconds between fallback polls of the commit log (SYNCLINE_SYNC_POLL_INTERVAL)",
    )
    args = parser.parse_args(argv)
    require_service_arguments(parser, args)
    config = SyncConfig(
        **node_settings(args),
        region=args.region,
        poll_interval_seconds=args.poll_interval,
        admin_secret=_admin_secret(parser),
    )
    return config, args.pg_dsn


def main(argv: list[str] | None = None) -> int:
    config, dsn = load_config(argv)
    return run_service(SyncNode(config, PostgresStorage(dsn)))


if __name__ == "__main__":
    sys.exit(main())
