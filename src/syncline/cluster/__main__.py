"""``python -m syncline.cluster {txn,sync,gateway} [flags]``: run one cluster service."""

import sys

from syncline.cluster._entrypoints import main

sys.exit(main())
