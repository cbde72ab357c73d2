"""Composition root of the txn service: the leader-elected committer.

    python services/txn/main.py --app APP_DIR --pg-dsn DSN --zk-hosts HOSTS [--port P]

Every flag can also come from the environment (``SYNCLINE_<FLAG>``, e.g.
``SYNCLINE_PG_DSN``); flags win. Run two or more: one leads, the others stand by.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from syncline.cluster import TxnConfig, TxnNode, run_until_signalled
from syncline.storage import PostgresStorage
from syncline.txn import CommitterConfig


def _env(name: str) -> str | None:
    """The only place this service reads the environment."""
    return os.environ.get(f"SYNCLINE_{name}")


def load_config(argv: list[str] | None = None) -> tuple[TxnConfig, str]:
    parser = argparse.ArgumentParser(prog="syncline-txn", description=__doc__.splitlines()[0])
    parser.add_argument("--app", default=_env("APP_DIR"), help="app directory (its schema.py)")
    parser.add_argument("--pg-dsn", default=_env("PG_DSN"), help="primary PostgreSQL DSN")
    parser.add_argument("--zk-hosts", default=_env("ZK_HOSTS"), help="ZooKeeper hosts[/chroot]")
    parser.add_argument("--host", default=_env("TXN_HOST") or "127.0.0.1")
    parser.add_argument("--port", type=int, default=int(_env("TXN_PORT") or 0))
    parser.add_argument("--http-port", type=int, default=int(_env("TXN_HTTP_PORT") or 0) or None)
    parser.add_argument("--advertise-host", default=_env("TXN_ADVERTISE_HOST"))
    parser.add_argument(
        "--session-timeout",
        type=float,
        default=float(_env("ZK_SESSION_TIMEOUT") or 6.0),
        help="ZooKeeper session timeout in seconds (bounds failover time)",
    )
    parser.add_argument("--max-batch", type=int, default=int(_env("TXN_MAX_BATCH") or 512))
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
    config = TxnConfig(
        app_dir=Path(args.app),
        zk_hosts=args.zk_hosts,
        host=args.host,
        port=args.port,
        http_port=args.http_port,
        advertise_host=args.advertise_host,
        session_timeout_seconds=args.session_timeout,
        committer=CommitterConfig(max_batch=args.max_batch),
    )
    return config, args.pg_dsn


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config, dsn = load_config(argv)
    asyncio.run(run_until_signalled(TxnNode(config, PostgresStorage(dsn))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
