"""Many client sessions over one gRPC stream between a gateway and a sync node.

A gRPC stream costs each side about 28 KiB of buffers and bookkeeping; one per
client session was most of a gateway's memory per session. A gateway instead
keeps one ``Sync.Sessions`` stream per sync node and numbers the sessions on it.
Frames of many sessions travel together in one ``SessionFrames`` message, so a
commit that reaches ten thousand sessions is a few large writes, not ten
thousand small ones.

Sharing a stream must not let one slow client hold up the others, so each
session has its own flow control: the node sends at most ``WINDOW`` frames of a
session that the gateway has not yet passed on to its client (the gateway
reports them passed on with ``delivered``). A slow client thus blocks only its
own session's sender on the node, which then coalesces what it owes that client
into fewer, larger Transitions, as it does for a slow direct connection.

``NodeLink`` is the gateway's end, ``serve_sessions`` the node's.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

import grpc

from syncline.server._backend import Close, Send
from syncline.telemetry import traced_frame
from syncline.v1 import syncline_pb2 as pb
from syncline.v1 import syncline_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

WINDOW = 16
"""Frames of one session a node may send ahead of what its client has taken."""
MAX_MESSAGE_BYTES = 1 << 20
"""Frames are batched into messages of about this size (a larger frame goes alone)."""
MAX_INBOX = 1024
"""Client frames a node buffers for one session before it ends the session."""


class NodeLost(Exception):
    """The stream to the sync node failed: its sessions must move to another node."""


class _Outbox:
    """Frames waiting to be written, written in batches by one task."""

    def __init__(self, write: Callable[[pb.SessionFrames], Awaitable[None]]) -> None:
        self._write = write
        self._frames: deque[pb.SessionFrame] = deque()
        self._dirty = asyncio.Event()

    def put(self, frame: pb.SessionFrame) -> None:
        self._frames.append(frame)
        self._dirty.set()

    async def run(self) -> None:
        """Write until cancelled or the stream fails (which the reader notices)."""
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            while self._frames:
                # At most MAX_MESSAGE_BYTES, or one larger frame alone: a message is
                # never larger than the largest frame the stream allows.
                batch = [self._frames.popleft()]
                size = len(batch[0].json)
                while self._frames and size + len(self._frames[0].json) + 16 <= MAX_MESSAGE_BYTES:
                    frame = self._frames.popleft()
                    batch.append(frame)
                    size += len(frame.json) + 16
                await self._write(pb.SessionFrames(frames=batch))


# -- the gateway's end ---------------------------------------------------------------------


class MuxSessionStream:
    """One client session on a NodeLink, as the relay reads and writes it."""

    def __init__(self, link: NodeLink, number: int) -> None:
        self._link = link
        self._number = number
        # A list and a future made on demand: cheaper than a deque and an Event for
        # the many sessions that sit idle.
        self._inbox: list[str] = []
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False
        """The node ended the session."""
        self._lost: str | None = None
        self._taken = False
        self._closed = False

    async def write(self, text: str, traceparent: str = "") -> None:
        """Send a client frame (with the trace context of the gateway's span for it);
        dropped once the node is lost (the move replays it)."""
        if not self._closed and self._lost is None:
            self._link.put(
                pb.SessionFrame(session=self._number, json=text, traceparent=traceparent)
            )

    async def read(self) -> str | None:
        """The node's next frame; None once the node ended the session.

        Raises NodeLost when the stream to the node failed. Calling it again means
        the previous frame was passed on, which returns that frame's credit.
        """
        if self._taken:
            self._taken = False
            if self._lost is None and not self._closed:
                self._link.put(pb.SessionFrame(session=self._number, delivered=1))
        while not self._inbox:
            if self._lost is not None:
                raise NodeLost(self._lost)
            if self._ended:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        self._taken = True
        return self._inbox.pop(0)

    def close(self) -> None:
        """The client left (or the session moved): end it on the node."""
        if self._closed:
            return
        self._closed = True
        self._link.forget(self._number)
        # Sent even when the node ended the session: the node then forgets the number.
        self._link.put(pb.SessionFrame(session=self._number, end="client left"))

    def _receive(self, frame: pb.SessionFrame) -> None:
        body = frame.WhichOneof("body")
        if body == "json":
            self._inbox.append(frame.json)
        elif body == "end":
            self._ended = True
            log.debug("sync node ended session %d: %s", self._number, frame.end)
        self._wake()

    def _lose(self, reason: str) -> None:
        self._lost = reason
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class NodeLink:
    """A gateway's stream to one sync node, carrying any number of sessions."""

    def __init__(self, address: str, stub: pb_grpc.SyncStub) -> None:
        self.address = address
        self._call = stub.Sessions()
        self._sessions: dict[int, MuxSessionStream] = {}
        self._numbers = itertools.count(1)
        self._outbox = _Outbox(self._call.write)
        self.lost: str | None = None
        self._writer = asyncio.ensure_future(self._write())
        self._reader = asyncio.ensure_future(self._read())

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    def open(self) -> MuxSessionStream:
        stream = MuxSessionStream(self, next(self._numbers))
        if self.lost is not None:
            stream._lose(self.lost)
        else:
            self._sessions[stream._number] = stream
        return stream

    def put(self, frame: pb.SessionFrame) -> None:
        if self.lost is None:
            self._outbox.put(frame)

    def forget(self, number: int) -> None:
        self._sessions.pop(number, None)

    async def close(self) -> None:
        self._lose("the gateway is shutting down")
        for task in (self._reader, self._writer):
            task.cancel()
        await asyncio.gather(self._reader, self._writer, return_exceptions=True)

    async def _write(self) -> None:
        try:
            await self._outbox.run()
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as exc:
            log.debug("writing to sync node %s failed: %r", self.address, exc)

    async def _read(self) -> None:
        try:
            while True:
                message = await self._call.read()
                if message is grpc.aio.EOF:
                    reason = (await self._call.code()).name
                    break
                for frame in message.frames:
                    stream = self._sessions.get(frame.session)
                    if stream is not None:
                        stream._receive(frame)
        except grpc.aio.AioRpcError as exc:
            reason = exc.code().name
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            reason = "CANCELLED"
        self._lose(reason)

    def _lose(self, reason: str) -> None:
        if self.lost is not None:
            return
        self.lost = reason
        log.info(
            "stream to sync node %s lost (%s): moving %d sessions",
            self.address,
            reason,
            len(self._sessions),
        )
        sessions, self._sessions = self._sessions, {}
        for stream in sessions.values():
            stream._lose(reason)
        self._writer.cancel()
        self._call.cancel()


# -- the node's end ------------------------------------------------------------------------


class SessionRunner(Protocol):
    """A sync session (``SyncSession``): runs until its client frames end."""

    async def run(self, frames: AsyncIterator[str]) -> None: ...


MakeSession = Callable[[Send, Close], SessionRunner]


class _NodeSession:
    def __init__(self, number: int, outbox: _Outbox) -> None:
        self.number = number
        self._outbox = outbox
        self.inbox: deque[str | None] = deque()
        self._inbox_ready = asyncio.Event()
        self._credits = WINDOW
        self._credit = asyncio.Event()
        self._credit.set()
        self.ended = False
        self.ended_here = False
        """Ended by the node: frames the gateway sent before it knew are ignored."""
        self.task: asyncio.Task[None] | None = None

    async def send(self, frame: str) -> None:
        while self._credits <= 0 and not self.ended:
            self._credit.clear()
            await self._credit.wait()
        if self.ended:
            return
        self._credits -= 1
        self._outbox.put(pb.SessionFrame(session=self.number, json=frame))

    async def close(self, reason: str) -> None:
        """The session ends itself (a fatal protocol error, an auth failure)."""
        if not self.ended:
            self.end()
            self.ended_here = True
            self._outbox.put(pb.SessionFrame(session=self.number, end=reason))
            if self.task is not None:
                asyncio.get_running_loop().call_soon(self.task.cancel)

    def end(self) -> None:
        self.ended = True
        self._credit.set()

    def delivered(self, count: int) -> None:
        self._credits += count
        self._credit.set()

    def receive(self, text: str | None) -> bool:
        """Queue a client frame (None: the client left); False when the session
        has more unread frames than allowed."""
        if text is not None and len(self.inbox) >= MAX_INBOX:
            return False
        self.inbox.append(text)
        self._inbox_ready.set()
        return True

    async def frames(self) -> AsyncIterator[str]:
        while True:
            while not self.inbox:
                self._inbox_ready.clear()
                await self._inbox_ready.wait()
            text = self.inbox.popleft()
            if text is None:
                return
            yield text


async def serve_sessions(
    requests: AsyncIterator[pb.SessionFrames],
    write: Callable[[pb.SessionFrames], Awaitable[None]],
    make_session: MakeSession,
    on_count: Callable[[int], None] = lambda delta: None,
) -> None:
    """Serve one Sessions stream until the gateway ends it; ``on_count`` hears of
    each session opened (+1) and ended (-1)."""
    outbox = _Outbox(write)
    writer = asyncio.ensure_future(outbox.run())
    sessions: dict[int, _NodeSession] = {}
    retired: set[int] = set()
    """Sessions the node ended, until the gateway confirms with its own end."""

    def finished(session: _NodeSession, task: asyncio.Task[None]) -> None:
        if sessions.get(session.number) is session:
            del sessions[session.number]
        on_count(-1)
        if not task.cancelled() and task.exception() is not None:
            log.error("sync session failed", exc_info=task.exception())
            if not session.ended:
                session.end()
                session.ended_here = True
                outbox.put(pb.SessionFrame(session=session.number, end="internal error"))
        if session.ended_here:
            retired.add(session.number)

    try:
        async for message in requests:
            for frame in message.frames:
                session = sessions.get(frame.session)
                body = frame.WhichOneof("body")
                if session is None and frame.session in retired:
                    if body == "end":
                        retired.discard(frame.session)
                    continue
                if body == "json":
                    if session is None:
                        session = sessions[frame.session] = _NodeSession(frame.session, outbox)
                        runner = make_session(session.send, session.close)
                        session.task = asyncio.ensure_future(runner.run(session.frames()))
                        session.task.add_done_callback(functools.partial(finished, session))
                        on_count(1)
                    if not session.receive(traced_frame(frame.json, frame.traceparent)):
                        await session.close(f"more than {MAX_INBOX} frames waiting")
                elif session is not None and body == "delivered":
                    session.delivered(frame.delivered)
                elif session is not None and body == "end":
                    session.end()
                    session.ended_here = False  # the gateway is done with the number
                    session.receive(None)
    finally:
        for session in list(sessions.values()):
            session.end()
            if session.task is not None:
                session.task.cancel()
        tasks = [s.task for s in sessions.values() if s.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
            await writer
