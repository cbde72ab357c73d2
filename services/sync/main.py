"""Entry point of the sync service: sessions, subscriptions and functions (also ``python -m syncline.cluster sync``).

    python services/sync/main.py --app APP_DIR --pg-dsn DSN --zk-hosts HOSTS [--port P]

Every flag can also come from the environment (``SYNCLINE_<NAME>``, named in each
flag's help); flags win. The admin secret comes only from the environment
(``SYNCLINE_ADMIN_SECRET``, hex), so it never shows in a process listing.
"""

import sys

from syncline.cluster._entrypoints import sync_main

if __name__ == "__main__":
    sys.exit(sync_main())
