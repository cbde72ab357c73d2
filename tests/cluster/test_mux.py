"""Many sessions over one Sessions stream: flow control per session, node-ended
sessions, and a lost stream, over a real gRPC server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from syncline.cluster._mux import WINDOW, MuxSessionStream, NodeLink, NodeLost, serve_sessions
from syncline.server._backend import Close, Send
from syncline.v1 import syncline_pb2_grpc as pb_grpc


class EchoSession:
    """For "burst N", sends N numbered frames; for "close", ends itself; else echoes."""

    opened = 0

    def __init__(self, send: Send, close: Close) -> None:
        self._send = send
        self._close = close
        EchoSession.opened += 1

    async def run(self, frames: AsyncIterator[str]) -> None:
        async for text in frames:
            if text.startswith("burst "):
                for i in range(int(text.split()[1])):
                    await self._send(str(i))
            elif text == "close":
                await self._close("asked to")
            else:
                await self._send(text)


class Servicer(pb_grpc.SyncServicer):  # type: ignore[misc]
    async def Sessions(self, requests: Any, context: grpc.aio.ServicerContext) -> None:
        await serve_sessions(requests, context.write, EchoSession)


@pytest.fixture
async def link() -> AsyncIterator[tuple[NodeLink, grpc.aio.Server]]:
    server = grpc.aio.server()
    pb_grpc.add_SyncServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    node_link = NodeLink(f"127.0.0.1:{port}", pb_grpc.SyncStub(channel))
    yield node_link, server
    await node_link.close()
    await channel.close()
    await server.stop(None)


async def read_n(stream: MuxSessionStream, n: int) -> list[str | None]:
    return [await asyncio.wait_for(stream.read(), 5) for _ in range(n)]


async def test_a_session_that_stops_reading_holds_up_only_itself(
    link: tuple[NodeLink, grpc.aio.Server],
) -> None:
    node_link, _ = link
    slow, fast = node_link.open(), node_link.open()
    await slow.write("burst 500")
    await fast.write("burst 500")
    assert await read_n(fast, 500) == [str(i) for i in range(500)]
    # The slow session got its window and no more: the node holds the rest back.
    await asyncio.sleep(0.2)
    assert len(slow._inbox) == WINDOW
    assert await read_n(slow, 500) == [str(i) for i in range(500)]


async def test_a_session_the_node_ends_reads_as_ended_and_its_number_is_not_reused(
    link: tuple[NodeLink, grpc.aio.Server],
) -> None:
    node_link, _ = link
    ending, other = node_link.open(), node_link.open()
    EchoSession.opened = 0
    await ending.write("hello")
    await ending.write("close")
    assert await read_n(ending, 2) == ["hello", None]
    await ending.write("late")  # sent before the gateway knew: ignored by the node
    ending.close()
    await other.write("still here")
    assert await read_n(other, 1) == ["still here"]
    assert EchoSession.opened == 2


async def test_every_session_on_a_lost_stream_raises_node_lost(
    link: tuple[NodeLink, grpc.aio.Server],
) -> None:
    node_link, server = link
    streams = [node_link.open() for _ in range(3)]
    for stream in streams:
        await stream.write("ping")
        assert await read_n(stream, 1) == ["ping"]
    await server.stop(None)
    for stream in streams:
        with pytest.raises(NodeLost):
            await asyncio.wait_for(stream.read(), 5)
    assert node_link.lost is not None
    with pytest.raises(NodeLost):
        await node_link.open().read()
