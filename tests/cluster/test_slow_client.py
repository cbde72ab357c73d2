"""A client that stops reading: the gateway and the sync node keep their memory bounded
(each session's backlog collapses into fewer, larger transitions), and other clients
keep receiving updates."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from syncline.cluster._local_cluster import LocalCluster
from tests.cluster.conftest import BANK, SyncClient

pytestmark = pytest.mark.cluster

KEY_BYTES = 2_000
EVENTS = 200
MUTATIONS = 300


@pytest.fixture
async def cluster() -> AsyncIterator[LocalCluster]:
    """A local cluster (every role its own process) in a directory PostgreSQL may enter."""
    base = Path(tempfile.mkdtemp(prefix="syncline-slow-"))
    base.chmod(0o755)
    local = LocalCluster.create(base / "cluster", BANK)
    try:
        await local.up(lambda line: None)
        yield local
    finally:
        await local.down(lambda line: None)
        shutil.rmtree(base, ignore_errors=True)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def ws_frame(text: str) -> bytes:
    """One masked client text frame (RFC 6455)."""
    payload = text.encode()
    header = bytearray([0x81])
    if len(payload) < 126:
        header.append(0x80 | len(payload))
    elif len(payload) < 1 << 16:
        header += bytes([0x80 | 126]) + len(payload).to_bytes(2, "big")
    else:
        header += bytes([0x80 | 127]) + len(payload).to_bytes(8, "big")
    mask = os.urandom(4)
    return bytes(header) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def stalled_client(port: int, frames: list[dict[str, Any]]) -> asyncio.StreamWriter:
    """A WebSocket client that sends ``frames`` and then never reads another byte."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1024)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /api/1.0/sync HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    for frame in frames:
        writer.write(ws_frame(json.dumps(frame)))
    await writer.drain()
    return writer


async def test_a_client_that_stops_reading_leaves_memory_bounded(cluster: LocalCluster) -> None:
    gateway_port = cluster.gateway.spec.http_port
    grpc_address = cluster.gateway.address
    writer_client = SyncClient(grpc_address)
    await writer_client.connect()
    watcher = SyncClient(grpc_address)
    await watcher.connect()
    try:
        for i in range(EVENTS):
            await writer_client.mutate("bank:record", {"key": f"{i:04d}" + "k" * KEY_BYTES})
        await writer_client.mutation_response(EVENTS - 1, timeout=60)
        stalled = await stalled_client(
            gateway_port,
            [
                {"type": "Connect", "sessionId": "stalled", "connectionCount": 0},
                {
                    "type": "ModifyQuerySet",
                    "baseVersion": 0,
                    "newVersion": 1,
                    "modifications": [
                        {"type": "Add", "queryId": 0, "udfPath": "bank:event_keys", "args": [{}]}
                    ],
                },
            ],
        )
        await watcher.subscribe(0, "bank:counter", {"name": "alive"})
        await watcher.wait_value(0, 0.0)
        pids = {s.spec.name: s.pid for s in cluster.services if s.spec.role in ("sync", "gateway")}
        await asyncio.sleep(1.0)  # the stalled session's first result fills the socket
        before = {name: rss_bytes(pid) for name, pid in pids.items() if pid is not None}

        # Each mutation changes the ~400 KB result the stalled client subscribed to.
        for i in range(MUTATIONS):
            await writer_client.mutate("bank:record", {"key": f"z{i:04d}" + "k" * KEY_BYTES})
        await writer_client.mutation_response(EVENTS + MUTATIONS - 1, timeout=120)
        request_id = await writer_client.mutate("bank:increment", {"name": "alive"})
        await writer_client.mutation_response(request_id)
        await watcher.wait_value(0, 1.0)  # other sessions are not held up
        after = {name: rss_bytes(pid) for name, pid in pids.items() if pid is not None}

        # Queued in full, the updates would take 300 x ~400 KB = ~120 MB per process.
        for name in before:
            growth = after[name] - before[name]
            assert growth < 40 * 1024 * 1024, f"{name} grew {growth / 2**20:.0f} MiB"
        stalled.close()
    finally:
        await writer_client.close()
        await watcher.close()
