"""Entry point of the txn service: the leader-elected committer (also ``python -m syncline.cluster txn``).

    python services/txn/main.py --app APP_DIR --pg-dsn DSN --zk-hosts HOSTS [--port P]

Every flag can also come from the environment (``SYNCLINE_<FLAG>``, e.g.
``SYNCLINE_PG_DSN``); flags win. Run two or more: one leads, the others stand by.
"""

import sys

from syncline.cluster._entrypoints import txn_main

if __name__ == "__main__":
    sys.exit(txn_main())
