"""Running one cluster node as a process: start, serve until signalled, shut down."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Protocol

log = logging.getLogger(__name__)


class ServiceNode(Protocol):
    """What a service's composition root runs (TxnNode, SyncNode)."""

    @property
    def kind(self) -> str:
        """The service's name in log lines: "txn", "sync"."""
        ...

    @property
    def identifier(self) -> str: ...

    @property
    def address(self) -> str: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


async def run_until_signalled(node: ServiceNode) -> None:
    """Serve until SIGTERM/SIGINT, then shut down in order."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await node.start()
    print(f"{node.kind} node {node.identifier} ready on {node.address}", flush=True)
    try:
        await stop.wait()
    finally:
        try:
            await node.close()
        except Exception:
            log.exception("%s node %s did not shut down cleanly", node.kind, node.identifier)
