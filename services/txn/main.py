"""Composition root of the txn service: the leader-elected committer.

    python services/txn/main.py --app APP_DIR --pg-dsn DSN --zk-hosts HOSTS [--port P]

Every flag can also come from the environment (``SYNCLINE_<FLAG>``, e.g.
``SYNCLINE_PG_DSN``); flags win. Run two or more: one leads, the others stand by.
"""

from __future__ import annotations

import argparse
import os
import sys

from syncline.cluster import TxnConfig, TxnNode
from syncline.cluster._service import (
    node_settings,
    require_service_arguments,
    run_service,
    service_arguments,
)
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
    config = TxnConfig(**node_settings(args), committer=CommitterConfig(max_batch=args.max_batch))
    return config, args.pg_dsn


def main(argv: list[str] | None = None) -> int:
    config, dsn = load_config(argv)
    return run_service(TxnNode(config, PostgresStorage(dsn)))


if __name__ == "__main__":
    sys.exit(main())
