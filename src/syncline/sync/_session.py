"""One client's sync session: its query set, identity, and outgoing frames.

Frames from the client are handled in order. Mutations run one at a time in
arrival order (a client's later mutation sees its earlier ones); actions run
concurrently. Everything the server sends goes through one sender task: first
queued responses, then one Transition from the last version the client has to
the current state. A slow client therefore receives fewer, larger transitions
rather than an unbounded backlog, and a MutationResponse always precedes the
Transition that reaches its ts (the client resolves the mutation on that).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from syncline._errors import (
    AppError,
    AuthenticationError,
    ProtocolError,
    RateLimitedError,
    SynclineError,
)
from syncline.functions import canonical_path
from syncline.presence import member_id_of
from syncline.runtime import ANONYMOUS, FunctionRunner, Identity, UncaughtFunctionError
from syncline.sync._identity import Authenticator
from syncline.sync._protocol import (
    AddQuery,
    Authenticate,
    Connect,
    Event,
    FunctionRequest,
    ModifyQuerySet,
    dumps,
    encode_ts,
    parse_client_message,
    query_removed,
    transition_frame,
    version_json,
)
from syncline.sync._subscriptions import (
    SharedQuery,
    SubscriptionManager,
    error_for_client,
    failure_outcome,
)
from syncline.telemetry import TracedFrame, context_from, sessions, tracer
from syncline.values import from_json, to_json

log = logging.getLogger(__name__)

PING_INTERVAL_SECONDS = 15.0
CATCH_UP_TIMEOUT_SECONDS = 10.0
MAX_QUERIES_PER_SESSION = 4096
MAX_QUEUED_REQUESTS = 1024
MAX_CONCURRENT_ACTIONS = 64
TOKEN_EXPIRY_LEEWAY_SECONDS = 60.0
"""The same leeway the verifier allows when the token is presented."""

Send = Callable[[str], Awaitable[None]]
Close = Callable[[str], Awaitable[None]]


class SyncSession:
    """Serves one WebSocket connection of the Convex sync protocol."""

    def __init__(
        self,
        *,
        manager: SubscriptionManager,
        runner: FunctionRunner,
        authenticator: Authenticator,
        send: Send,
        close: Close,
    ) -> None:
        self._manager = manager
        self._runner = runner
        self._authenticator = authenticator
        self._send = send
        self._close = close
        self.session_id: str | None = None
        self._fresh_requests = False
        self._highest_request_id = -1
        self._identity: Identity = ANONYMOUS
        self._query_set_version = 0
        self._identity_version = 0
        self._queries: dict[int, SharedQuery] = {}
        self._query_specs: dict[int, AddQuery] = {}
        self._sent: dict[int, str] = {}
        self._sent_version = (0, 0, 0)
        self._need_ts: int | None = None
        """A Transition reaching this ts is owed (it completes a mutation)."""
        self._min_ts = 0
        self._holding_at: int | None = None
        """While a mutation runs: the ts Transitions are held at (see _mutation_worker)."""
        self._outbox: deque[str] = deque()
        self._closing: str | None = None
        self._dirty = asyncio.Event()
        self._mutations: asyncio.Queue[tuple[FunctionRequest, Identity, str]] = asyncio.Queue(
            MAX_QUEUED_REQUESTS
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._done = asyncio.Event()
        self._actions_running = 0
        self._expiry: asyncio.Task[None] | None = None

    # -- called by the subscription manager ---------------------------------

    def mark_dirty(self) -> None:
        self._dirty.set()

    # -- lifecycle -----------------------------------------------------------

    async def run(self, frames: AsyncIterator[str | bytes]) -> None:
        """Serve until the client disconnects or the session fails."""
        sessions.add(1)
        self._spawn(self._sender(), "sender")
        self._spawn(self._mutation_worker(), "mutations")
        self._spawn(self._pinger(), "pinger")
        try:
            async for frame in frames:
                if self._closing is not None:
                    break
                try:
                    await self._handle(frame)
                except ProtocolError as exc:
                    self._fatal(f"{exc.code}: {exc.message}")
            # Give queued responses a moment to reach a client that is still there.
            if self._closing is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._done.wait(), 5.0)
        finally:
            await self._shutdown()

    async def _shutdown(self) -> None:
        sessions.add(-1)
        self._manager.forget_session(self)
        hub = self._runner.presence
        if hub is not None and self.session_id is not None:
            # The client is gone: its members leave their rooms now, not at expiry.
            hub.session_ended(member_id_of(self.session_id))
        for query in self._queries.values():
            self._manager.unsubscribe(self, query)
        self._queries.clear()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _spawn(self, coro: Awaitable[Any], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(f"session-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("session task %s failed", task.get_name(), exc_info=task.exception())

    def _queue(self, frame: str) -> None:
        self._outbox.append(frame)
        self._dirty.set()

    def _fatal(self, message: str) -> None:
        self._queue(dumps({"type": "FatalError", "error": message}))
        self._closing = message

    # -- incoming ------------------------------------------------------------

    async def _handle(self, frame: str | bytes) -> None:
        message = parse_client_message(frame)
        if isinstance(message, Connect):
            self._connect(message)
            return
        if self.session_id is None:
            raise ProtocolError(f"the first message must be Connect, got {type(message).__name__}")
        if isinstance(message, ModifyQuerySet):
            self._modify_query_set(message)
        elif isinstance(message, Authenticate):
            await self._authenticate(message)
        elif isinstance(message, FunctionRequest):
            try:
                await self._runner.admit(self._identity)
            except RateLimitedError as exc:
                self._queue(_failure_frame(f"{message.kind}Response", message.request_id, exc))
                return
            if message.kind == "Mutation":
                if self._mutations.full():
                    raise ProtocolError("too many mutations in flight on this session")
                self._mutations.put_nowait((message, self._identity, _traceparent(frame)))
            else:
                if self._actions_running >= MAX_CONCURRENT_ACTIONS:
                    raise ProtocolError(
                        f"at most {MAX_CONCURRENT_ACTIONS} actions may run at once per session"
                    )
                self._spawn(self._action(message, self._identity, _traceparent(frame)), "action")
        elif isinstance(message, Event):
            log.debug("client event %s", message.event_type)

    def _connect(self, message: Connect) -> None:
        if self.session_id is not None:
            raise ProtocolError("Connect was already received on this connection")
        self.session_id = message.session_id
        if self._runner.presence is not None:
            self._runner.presence.session_started(member_id_of(message.session_id))
        # On a session's first connection no request can have been sent before, so
        # a request id above every earlier one needs no look for an earlier commit.
        self._fresh_requests = message.connection_count == 0
        if message.max_observed_ts and message.max_observed_ts > self._manager.ts:
            # The client has seen a newer ts than we serve: never show it older data.
            self._min_ts = message.max_observed_ts
            self._manager.notify_when_advanced(self)
            self._spawn(self._await_catch_up(message.max_observed_ts), "catch-up")

    async def _await_catch_up(self, ts: int) -> None:
        if not await self._manager.wait_for_ts(ts, CATCH_UP_TIMEOUT_SECONDS):
            self._fatal(
                "the server is behind the client's maxObservedTimestamp; it will not serve "
                "older data (reconnect later)"
            )

    def _modify_query_set(self, message: ModifyQuerySet) -> None:
        if message.base_version != self._query_set_version:
            raise ProtocolError(
                f"ModifyQuerySet.baseVersion {message.base_version} does not match the "
                f"session's query set version {self._query_set_version}"
            )
        if message.new_version <= message.base_version:
            raise ProtocolError("ModifyQuerySet.newVersion must be greater than baseVersion")
        for mod in message.modifications:
            if isinstance(mod, AddQuery):
                if mod.query_id in self._queries:
                    raise ProtocolError(f"query {mod.query_id} is already in the query set")
                if len(self._queries) >= MAX_QUERIES_PER_SESSION:
                    raise ProtocolError(
                        f"a session may hold at most {MAX_QUERIES_PER_SESSION} queries"
                    )
                self._query_specs[mod.query_id] = mod
                self._queries[mod.query_id] = self._subscribe(mod)
            else:
                query = self._queries.pop(mod.query_id, None)
                if query is None:
                    raise ProtocolError(f"query {mod.query_id} is not in the query set")
                del self._query_specs[mod.query_id]
                self._manager.unsubscribe(self, query)
        self._query_set_version = message.new_version
        self._dirty.set()

    def _subscribe(self, mod: AddQuery) -> SharedQuery:
        try:
            path = canonical_path(mod.udf_path)
            args = from_json(mod.args)
        except SynclineError as exc:
            # A bad query fails on its own; the session carries on.
            query = self._manager.subscribe(self, mod.udf_path, None, self._identity, None)
            if query.outcome is None:
                query.outcome = failure_outcome(exc, [])
            return query
        return self._manager.subscribe(self, path, args, self._identity, mod.journal)

    async def _authenticate(self, message: Authenticate) -> None:
        if message.base_version != self._identity_version:
            raise ProtocolError(
                f"Authenticate.baseVersion {message.base_version} does not match the "
                f"session's identity version {self._identity_version}"
            )
        try:
            identity = await self._authenticator.identify(message.token_type, message.value)
        except AuthenticationError as exc:
            self._queue(
                dumps(
                    {
                        "type": "AuthError",
                        "error": exc.message,
                        "baseVersion": message.base_version,
                        "authUpdateAttempted": True,
                    }
                )
            )
            self._closing = "AuthError"
            return
        self._identity = identity
        self._identity_version += 1
        self._watch_expiry(identity)
        # Results may depend on who is asking: move every query to the new identity.
        for query_id, query in list(self._queries.items()):
            self._manager.unsubscribe(self, query)
            self._queries[query_id] = self._subscribe(self._query_specs[query_id])
        self._dirty.set()

    def _watch_expiry(self, identity: Identity) -> None:
        """When the token expires, tell the client (as Convex does) so it fetches a new one."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        expires_at = identity.expires_at
        if expires_at is None:
            return
        version = self._identity_version

        async def expire() -> None:
            await asyncio.sleep(max(0.0, expires_at + TOKEN_EXPIRY_LEEWAY_SECONDS - time.time()))
            if self._identity_version != version:
                return
            self._queue(
                dumps(
                    {
                        "type": "AuthError",
                        "error": "Token expired",
                        "baseVersion": version - 1,
                        "authUpdateAttempted": False,
                    }
                )
            )
            self._closing = "AuthError"

        task = asyncio.ensure_future(expire())
        task.set_name("session-token-expiry")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        self._expiry = task

    # -- functions -----------------------------------------------------------

    async def _mutation_worker(self) -> None:
        while True:
            request, identity, traceparent = await self._mutations.get()
            # Until its response is queued, no Transition past what the client may
            # already have goes out: the client resolves a mutation on the first
            # Transition reaching its ts, so the response must come first, even when
            # the commit's notice reaches the subscriptions before its answer does.
            self._holding_at = self._manager.ts
            try:
                with _span("mutation", request, traceparent):
                    frame = await self._run_mutation(request, identity)
            except Exception:
                # Never leave the client waiting: later mutations still run.
                log.exception("mutation %s failed unexpectedly", request.udf_path)
                self._owe_transition_at(self._manager.ts)
                frame = _failure_frame(
                    "MutationResponse",
                    request.request_id,
                    UncaughtFunctionError("Server Error: the mutation could not run"),
                )
            self._holding_at = None
            self._queue(frame)

    async def _run_mutation(self, request: FunctionRequest, identity: Identity) -> str:
        key = f"{self.session_id}|{request.request_id}"
        fresh = self._fresh_requests and request.request_id > self._highest_request_id
        self._highest_request_id = max(self._highest_request_id, request.request_id)
        try:
            result = await self._runner.run_mutation(
                request.udf_path,
                from_json(request.args),
                identity,
                idempotency_key=key,
                fresh_key=fresh,
                session_id=self.session_id,
            )
        except SynclineError as exc:
            # Convex's Rust client completes a mutation that failed with errorData only
            # on the next Transition, so one is owed even though nothing changed.
            self._owe_transition_at(self._manager.ts)
            return _failure_frame("MutationResponse", request.request_id, exc)
        self._owe_transition_at(result.ts)
        return dumps(
            {
                "type": "MutationResponse",
                "requestId": request.request_id,
                "success": True,
                "result": to_json(result.value),
                "ts": encode_ts(result.ts),
                "logLines": result.log_lines,
            }
        )

    def _owe_transition_at(self, ts: int) -> None:
        self._need_ts = ts if self._need_ts is None else max(self._need_ts, ts)
        self._manager.notify_when_advanced(self)
        self._dirty.set()

    async def _action(self, request: FunctionRequest, identity: Identity, traceparent: str) -> None:
        self._actions_running += 1
        try:
            with _span("action", request, traceparent):
                await self._run_action(request, identity)
        except Exception:
            log.exception("action %s failed unexpectedly", request.udf_path)
            error = UncaughtFunctionError("Server Error: the action could not run")
            self._queue(_failure_frame("ActionResponse", request.request_id, error))
        finally:
            self._actions_running -= 1

    async def _run_action(self, request: FunctionRequest, identity: Identity) -> None:
        try:
            result = await self._runner.run_action(
                request.udf_path, from_json(request.args), identity
            )
        except SynclineError as exc:
            self._queue(_failure_frame("ActionResponse", request.request_id, exc))
            return
        self._queue(
            dumps(
                {
                    "type": "ActionResponse",
                    "requestId": request.request_id,
                    "success": True,
                    "result": to_json(result.value),
                    "logLines": result.log_lines,
                }
            )
        )

    # -- outgoing ------------------------------------------------------------

    async def _sender(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            while self._outbox:
                await self._send(self._outbox.popleft())
            if self._closing is not None:
                self._done.set()
                await self._close(self._closing)
                return
            frame = self._transition()
            if frame is not None:
                await self._send(frame)

    def _transition(self) -> str | None:
        ts = self._manager.ts
        if ts < self._min_ts or (self._need_ts is not None and ts < self._need_ts):
            self._manager.notify_when_advanced(self)
        if ts < self._min_ts:
            return None
        if self._holding_at is not None and ts > self._holding_at:
            return None  # sent once the running mutation's response is queued
        if any(q.outcome is None for q in self._queries.values()):
            return None  # a new query runs in the next step; send everything together
        modifications: list[str] = []
        sent: dict[int, str] = {}
        for query_id, query in self._queries.items():
            assert query.outcome is not None
            sent[query_id] = query.outcome.fingerprint
            if self._sent.get(query_id) != query.outcome.fingerprint:
                modifications.append(query.outcome.modification(query_id))
        modifications.extend(query_removed(q) for q in self._sent if q not in self._queries)
        end = (self._query_set_version, self._identity_version, ts)
        owed = self._need_ts is not None and ts >= self._need_ts
        if not modifications and end[:2] == self._sent_version[:2] and not owed:
            return None
        if owed:
            self._need_ts = None
        start = self._sent_version
        self._sent, self._sent_version = sent, end
        return transition_frame(version_json(*start), version_json(*end), modifications)

    async def _pinger(self) -> None:
        while True:
            await asyncio.sleep(PING_INTERVAL_SECONDS)
            self._queue('{"type":"Ping"}')


def _traceparent(frame: str | bytes) -> str:
    """The trace context a gateway sent with the frame ("" for none)."""
    return frame.traceparent if isinstance(frame, TracedFrame) else ""


def _span(kind: str, request: FunctionRequest, traceparent: str) -> Any:
    """The span of running one client request, in the trace the gateway started."""
    return tracer.start_as_current_span(
        f"sync {kind}",
        context=context_from(traceparent),
        kind=SpanKind.SERVER,
        attributes={"syncline.function.path": request.udf_path[:256]},
    )


def _failure_frame(kind: str, request_id: int, exc: SynclineError) -> str:
    trace.get_current_span().set_status(Status(StatusCode.ERROR, exc.code))
    message, error_data = error_for_client(exc)
    frame: dict[str, Any] = {
        "type": kind,
        "requestId": request_id,
        "success": False,
        "result": message,
        "logLines": [],
    }
    if isinstance(exc, AppError):
        frame["errorData"] = error_data
    return dumps(frame)


__all__ = ["SyncSession"]
