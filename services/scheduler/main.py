"""Entry point of the scheduler service: scheduled functions and crons, one active at a time
(also ``python -m syncline.cluster scheduler``).

    python services/scheduler/main.py --app APP_DIR --pg-dsn DSN --zk-hosts HOSTS [--port P]

Every flag can also come from the environment (``SYNCLINE_<NAME>``, named in each
flag's help); flags win.
"""

import sys

from syncline.cluster._entrypoints import scheduler_main

if __name__ == "__main__":
    sys.exit(scheduler_main())
