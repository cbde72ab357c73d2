"""Entry point of the gateway: the client-facing edge of a region (also ``python -m syncline.cluster gateway``).

    python services/gateway/main.py --zk-hosts HOSTS [--region R] [--port P] [--grpc-port G]

Every flag can also come from the environment (``SYNCLINE_<NAME>``, named in each
flag's help); flags win.
"""

import sys

from syncline.cluster._entrypoints import gateway_main

if __name__ == "__main__":
    sys.exit(gateway_main())
