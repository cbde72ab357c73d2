"""The fault proxy between two local endpoints: delay, one-way loss, blackhole, reset."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from syncline._errors import ConfigError
from syncline.devservers import FaultProxy, LocalFaultProxy, free_port


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1024):
        writer.write(data)
        await writer.drain()
    writer.close()


@pytest.fixture
async def proxy() -> AsyncIterator[FaultProxy]:
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    front = FaultProxy(server.sockets[0].getsockname()[1])
    await front.start()
    yield front
    await front.close()
    server.close()
    await server.wait_closed()


async def connect(proxy: FaultProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", proxy.port)


async def test_bytes_pass_through_in_order_and_a_delay_applies_each_way(proxy: FaultProxy) -> None:
    reader, writer = await connect(proxy)
    writer.write(b"hello")
    assert await reader.readexactly(5) == b"hello"
    proxy.delay_ms = 60
    started = time.monotonic()
    for chunk in (b"a", b"b", b"c"):
        writer.write(chunk)
        await writer.drain()
    assert await asyncio.wait_for(reader.readexactly(3), 5) == b"abc"
    # There and back: at least the delay twice (a lower bound the proxy enforces).
    assert time.monotonic() - started >= 0.12
    writer.close()


async def test_one_way_loss_and_blackhole_keep_connections_open_until_healed(
    proxy: FaultProxy,
) -> None:
    reader, writer = await connect(proxy)
    proxy.drop = "downstream"  # the server's replies vanish
    writer.write(b"lost")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readexactly(4), 0.3)
    proxy.drop = "both"
    writer.write(b"gone")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readexactly(4), 0.3)
    proxy.heal()
    writer.write(b"back")
    assert await asyncio.wait_for(reader.readexactly(4), 5) == b"back"
    writer.close()


async def test_a_hold_stalls_both_ways_and_loses_nothing(proxy: FaultProxy) -> None:
    reader, writer = await connect(proxy)
    proxy.hold = True
    writer.write(b"kept")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readexactly(4), 0.3)
    proxy.hold = False
    assert await asyncio.wait_for(reader.readexactly(4), 5) == b"kept"
    writer.close()


async def test_reset_aborts_every_connection(proxy: FaultProxy) -> None:
    connections = [await connect(proxy) for _ in range(3)]
    for reader, writer in connections:
        writer.write(b"x")
        assert await reader.readexactly(1) == b"x"
    proxy.reset()
    for reader, writer in connections:
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(reader.readexactly(1), 5)
        writer.close()


async def test_as_a_process_it_is_controlled_over_http(tmp_path: Path) -> None:
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    upstream = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    link = LocalFaultProxy(tmp_path, port=free_port(), upstream=upstream, control_port=free_port())
    try:
        async with link:
            assert await link.faults() == {"delay_ms": 0.0, "hold": False, "drop": "none"}
            assert (await link.faults(delay_ms=30, hold=True))["hold"] is True
            reader, writer = await asyncio.open_connection("127.0.0.1", link.port)
            writer.write(b"held")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.readexactly(4), 0.3)
            await link.control("heal")
            assert await asyncio.wait_for(reader.readexactly(4), 5) == b"held"
            with pytest.raises(ConfigError, match="drop one of"):
                await link.faults(drop="sideways")
            writer.close()
        assert link.pid is None
    finally:
        server.close()
        await server.wait_closed()
