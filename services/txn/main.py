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
from syncline.cluster._service import require_service_arguments, service_arguments
from syncline.storage import PostgresStorage
from syncline.txn import CommitterConfig


def _env(name: str) -> str | None:
    """The only place this service reads the environment."""
    return os.environ.get(f"SYNCLINE_{name}")


def load_config(argv: list[str] | None = None) -> tuple[TxnConfig, str]:
    parser = argparse.ArgumentParser(prog="syncline-txn", description=__doc__.splitlines()[0])
    service_arguments(parser, service="TXN", env=_env)
    parser.add_argument("--max-batch", type=int, default=int(_env("TXN_MAX_BATCH") or 512))
    args = parser.parse_args(argv)
    require_service_arguments(parser, args)
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
