"""One client session relayed by a gateway to a sync node, moved when the node dies.

The gateway passes the Convex sync protocol through unchanged while it keeps
what it needs to rebuild the session elsewhere: the client's query set and its
version, the identity frames, the last version the client was sent, and the
mutations and actions not yet answered. When the node's stream fails (the
node was killed, or is shutting down) the gateway opens a stream to another
live node and replays:

1. ``Connect`` with the same session id and ``maxObservedTimestamp`` set to the
   last ts the client was sent, so the new node never shows older data;
2. the confirmed ``Authenticate``, then the whole query set as one
   ``ModifyQuerySet`` (0 -> 1), then identity changes not yet confirmed;
3. unanswered mutations, resent as they were: sync-protocol mutations are
   deduplicated by session id and request id, so one that did commit returns
   its first result instead of applying again. Unanswered actions fail, as
   Convex clients fail them when a connection drops.

The new node counts versions from zero, so the gateway adds an offset to every
query-set and identity version it forwards back (and subtracts it going in).
Transitions from the new node are held back until one reaches the replayed
state; that one is sent to the client as starting from the client's last
version. The client sees a delay, never a broken version chain.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from syncline._errors import SynclineError
from syncline.cluster._members import SyncMembers
from syncline.cluster._mux import NodeLost
from syncline.server._backend import Close, Send
from syncline.telemetry import current_traceparent, tracer

log = logging.getLogger(__name__)

ACTION_LOST = "Connection lost while action was in flight"


class SessionStream(Protocol):
    """One session on a sync node (``MuxSessionStream``)."""

    async def write(self, text: str, traceparent: str = "") -> None: ...

    async def read(self) -> str | None:
        """The node's next frame; None when the node ended the session. Raises
        NodeLost when the node is gone."""
        ...

    def close(self) -> None: ...


OpenStream = Callable[[str], SessionStream]


_TRANSITION_HEAD = re.compile(
    r'\{"type":"Transition","startVersion":\{[^{}]*\},'
    r'"endVersion":\{"querySet":(?P<query_set>\d+),"identity":(?P<identity>\d+),'
    r'"ts":"(?P<ts>[^"]*)"\},'
)
"""The head of a Transition as sync nodes write it (see ``transition_frame``)."""


class RelayedSession:
    """Serves one client connection through whichever sync node is alive."""

    def __init__(
        self,
        *,
        members: SyncMembers,
        open_stream: OpenStream,
        send: Send,
        close: Close,
        failover_timeout_seconds: float = 30.0,
    ) -> None:
        self._members = members
        self._open_stream = open_stream
        self._send = send
        self._close = close
        self._failover_timeout = failover_timeout_seconds
        self._stream: SessionStream | None = None
        self._address: str | None = None
        self._spans: dict[int, trace.Span] = {}
        """The open span of each mutation and action sent, by request id."""
        self._lock = asyncio.Lock()
        """Held while writing to the node and while moving to another node."""
        # What a replay needs is kept as compact JSON text, parsed only to replay:
        # a gateway holds many idle sessions, and text is a fraction of a dict's size.
        self._connect: str | None = None
        self._session_id = ""
        self._queries: dict[int, str] = {}
        """The Add modification of every query in the set, by query id."""
        self._query_set_version = 0
        self._auth_frames: dict[int, dict[str, Any]] = {}
        """Authenticate frames by the (client-side) identity version they lead to."""
        self._sent_end: tuple[int, int, Any] = (0, 0, None)
        """The endVersion (querySet, identity, ts) of the last Transition the client got."""
        self._mutations: dict[int, str] = {}
        self._actions: list[int] = []
        """Actions not yet answered (few, and most sessions have none)."""
        self._query_set_offset = 0
        self._identity_offset = 0
        self._replay_target: tuple[int, int] | None = None
        """While replaying: the (query set, identity) version the new node must reach."""
        self.moves = 0

    @property
    def session_id(self) -> str:
        """The client's session id (from its Connect; empty before)."""
        return self._session_id

    @property
    def address(self) -> str | None:
        """The sync node currently serving this session."""
        return self._address

    async def run(self, frames: AsyncIterator[str | bytes]) -> None:
        """Relay until the client leaves or the session ends; never raises for a node.

        Client frames are relayed in this task; the node's frames in one more,
        started with the first stream. Whatever ends the session on the node's side
        closes the client's connection, which ends the frames here.
        """
        from_node: asyncio.Future[None] | None = None
        try:
            async for frame in frames:
                text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
                message = _parse(text)
                async with self._lock:
                    if self._stream is None:
                        try:
                            await self._first_stream(message)
                        except SynclineError as exc:
                            await self._close(exc.message)
                            return
                        from_node = asyncio.ensure_future(self._from_nodes())
                    traceparent = ""
                    if message is not None:
                        text = self._track_outgoing(message, text)
                        traceparent = self._start_span(message)
                    await self._write(text, traceparent)
                # Not kept alive while this session waits for its next frame.
                message = None
        finally:
            for span in self._spans.values():
                span.set_status(Status(StatusCode.ERROR, "the client left"))
                span.end()
            self._spans.clear()
            if from_node is not None:
                from_node.cancel()
                await asyncio.gather(from_node, return_exceptions=True)
            # The client went away: end the node's session too.
            if self._stream is not None:
                self._stream.close()

    # -- client -> node ------------------------------------------------------------------

    async def _first_stream(self, first: dict[str, Any] | None) -> None:
        session_id = first.get("sessionId") if first is not None else None
        key = session_id if isinstance(session_id, str) else ""
        member = await self._members.wait_pick(key, avoid=(), within=self._failover_timeout)
        self._stream, self._address = self._open_stream(member.address), member.address

    def _track_outgoing(self, message: dict[str, Any], text: str) -> str:
        """Remember what a replay needs; translate versions to the node's."""
        kind = message.get("type")
        shifted = message
        if kind == "Connect":
            self._connect = _compact(message)
            session_id = message.get("sessionId")
            self._session_id = session_id if isinstance(session_id, str) else ""
        elif kind == "ModifyQuerySet":
            for mod in message.get("modifications") or []:
                if not isinstance(mod, dict) or not isinstance(mod.get("queryId"), int):
                    continue  # malformed: the node refuses the frame
                if mod.get("type") == "Add":
                    self._queries[mod["queryId"]] = _compact(mod)
                elif mod.get("type") == "Remove":
                    self._queries.pop(mod["queryId"], None)
            if isinstance(message.get("newVersion"), int):
                self._query_set_version = message["newVersion"]
            shifted = _shift(message, ("baseVersion", "newVersion"), -self._query_set_offset)
        elif kind == "Authenticate":
            if isinstance(message.get("baseVersion"), int):
                self._auth_frames[message["baseVersion"] + 1] = dict(message)
            shifted = _shift(message, ("baseVersion",), -self._identity_offset)
        elif kind == "Mutation" and isinstance(message.get("requestId"), int):
            self._mutations[message["requestId"]] = text
        elif kind == "Action" and isinstance(message.get("requestId"), int):
            self._actions.append(message["requestId"])
        return text if shifted is message else _compact(shifted)

    async def _write(self, text: str, traceparent: str = "") -> None:
        # If the node is gone the frame is dropped: the reader side moves the
        # session, and what this frame did is in the tracked state and replayed.
        assert self._stream is not None
        await self._stream.write(text, traceparent)

    def _start_span(self, message: dict[str, Any]) -> str:
        """A span for a mutation or action, ended by its response; its trace context."""
        kind, request_id = message.get("type"), message.get("requestId")
        if kind not in ("Mutation", "Action") or not isinstance(request_id, int):
            return ""
        path = message.get("udfPath")
        span = tracer.start_span(
            f"gateway {kind.lower()}",
            kind=SpanKind.SERVER,
            attributes={
                "rpc.system": "convex_sync",
                "rpc.method": kind,
                "syncline.function.path": str(path)[:256],
            },
        )
        old = self._spans.pop(request_id, None)
        if old is not None:
            old.end()
        self._spans[request_id] = span
        with trace.use_span(span, end_on_exit=False):
            return current_traceparent()

    def _end_span(self, message: dict[str, Any]) -> None:
        request_id = message.get("requestId")
        span = self._spans.pop(request_id, None) if isinstance(request_id, int) else None
        if span is None:
            return
        if message.get("success") is False:
            span.set_status(Status(StatusCode.ERROR, str(message.get("result"))[:256]))
        span.end()

    # -- node -> client ------------------------------------------------------------------

    async def _from_nodes(self) -> None:
        while True:
            stream = self._stream
            assert stream is not None
            try:
                await self._relay_stream(stream)
                return  # the node ended the session (FatalError, AuthError): so do we
            except NodeLost as lost:
                log.info("session moving off sync node %s: %s", self._address, lost)
            try:
                await self._move()
            except SynclineError as exc:
                await self._close(f"no sync node could take the session over: {exc.message}")
                return

    async def _relay_stream(self, stream: SessionStream) -> None:
        while True:
            text = await stream.read()
            if text is None:
                await self._close("the session ended")
                return
            forwarded = self._track_incoming(text)
            if forwarded is not None:
                await self._send(forwarded)

    def _track_incoming(self, text: str) -> str | None:
        """Translate a node's frame to the client's versions; None: hold it back."""
        if self._query_set_offset == self._identity_offset == 0 and self._replay_target is None:
            # The usual case, a Transition passed on as it is: read only its head, not
            # its results (a large presence room makes every frame large). A journal
            # (a page boundary to remember for a replay) needs the whole frame.
            head = _TRANSITION_HEAD.match(text)
            if head is not None and '"journal":"' not in text:
                self._sent_end = (int(head["query_set"]), int(head["identity"]), head["ts"])
                return text
        message = _parse(text)
        if message is None:
            return text
        kind = message.get("type")
        if kind == "Transition":
            return self._transition(message, text)
        if kind in ("MutationResponse", "ActionResponse"):
            self._end_span(message)
        request_id = message.get("requestId")
        if kind == "MutationResponse" and isinstance(request_id, int):
            self._mutations.pop(request_id, None)
        elif kind == "ActionResponse" and request_id in self._actions:
            self._actions.remove(request_id)
        elif kind == "AuthError":
            return _compact(_shift(message, ("baseVersion",), self._identity_offset))
        return text

    def _transition(self, message: dict[str, Any], text: str) -> str | None:
        end = dict(message.get("endVersion") or {})
        start = dict(message.get("startVersion") or {})
        for version in (start, end):
            version["querySet"] = int(version.get("querySet", 0)) + self._query_set_offset
            version["identity"] = int(version.get("identity", 0)) + self._identity_offset
        if self._replay_target is not None:
            if (end["querySet"], end["identity"]) < self._replay_target:
                return None  # the new node has not caught up with the replay yet
            self._replay_target = None
            query_set, identity, ts = self._sent_end
            start = {"querySet": query_set, "identity": identity, "ts": ts}
        for mod in message.get("modifications") or []:
            if not isinstance(mod, dict) or mod.get("type") != "QueryUpdated":
                continue
            query = self._queries.get(mod.get("queryId", -1))
            if query is not None and "journal" in mod:
                # A replay resumes the query's pages where the client has them.
                self._queries[mod["queryId"]] = _compact(
                    {**json.loads(query), "journal": mod["journal"]}
                )
        self._sent_end = (end["querySet"], end["identity"], end.get("ts"))
        if start == message.get("startVersion") and end == message.get("endVersion"):
            return text  # the usual case (no move yet): forward the node's frame as it is
        return _compact({**message, "startVersion": start, "endVersion": end})

    # -- moving to another node --------------------------------------------------------

    async def _move(self) -> None:
        async with self._lock:
            failed = self._address
            old = self._stream
            if old is not None:
                old.close()
            key = self._session_id
            avoid = {failed} if failed is not None else set()
            member = await self._members.wait_pick(key, avoid=avoid, within=self._failover_timeout)
            self.moves += 1
            log.info("session %s moves from %s to %s", key, failed, member.address)
            self._stream, self._address = self._open_stream(member.address), member.address
            for frame in self._replay_frames():
                await self._write(frame)
        for request_id in sorted(self._actions):
            await self._send(
                json.dumps(
                    {
                        "type": "ActionResponse",
                        "requestId": request_id,
                        "success": False,
                        "result": ACTION_LOST,
                        "logLines": [],
                    }
                )
            )
        self._actions.clear()

    def _replay_frames(self) -> list[str]:
        frames: list[dict[str, Any]] = []
        connect = json.loads(self._connect) if self._connect else {"type": "Connect"}
        connect.setdefault("sessionId", "")
        connect["connectionCount"] = int(connect.get("connectionCount", 0)) + self.moves
        connect["lastCloseReason"] = "SyncNodeLost"
        _, identity, ts = self._sent_end
        if ts is not None:
            connect["maxObservedTimestamp"] = ts
        frames.append(connect)
        confirmed = self._auth_frames.get(identity) if identity > 0 else None
        # Without the frame that confirmed it (never expected), the new node serves
        # the session anonymously at identity version 0.
        self._identity_offset = identity - 1 if confirmed is not None else identity
        if confirmed is not None:
            frames.append({**confirmed, "baseVersion": 0})
        self._query_set_offset = max(self._query_set_version - 1, 0)
        if self._query_set_version > 0:
            frames.append(
                {
                    "type": "ModifyQuerySet",
                    "baseVersion": 0,
                    "newVersion": 1,
                    "modifications": [json.loads(q) for q in self._queries.values()],
                }
            )
        for target in sorted(v for v in self._auth_frames if v > identity):
            frame = self._auth_frames[target]
            frames.append({**frame, "baseVersion": target - 1 - self._identity_offset})
        for version in [v for v in self._auth_frames if v < identity]:
            del self._auth_frames[version]  # never replayed again
        self._replay_target = (self._query_set_version, identity)
        # Mutations go as they were sent: deduplicated by session and request id.
        return [_compact(frame) for frame in frames] + [
            self._mutations[r] for r in sorted(self._mutations)
        ]


def _parse(text: str) -> dict[str, Any] | None:
    try:
        message = json.loads(text)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def _compact(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"))


def _shift(message: dict[str, Any], fields: tuple[str, ...], by: int) -> dict[str, Any]:
    if by == 0:
        return message
    shifted = dict(message)
    for name in fields:
        if isinstance(shifted.get(name), int):
            shifted[name] += by
    return shifted
