"""Committing through the txn leader over gRPC, across failovers.

The leader announces itself in ZooKeeper; callers read the announcement and
send their commits in ``Txn.CommitBatch`` calls: whatever callers queued while
earlier calls were in flight goes out together, so one call's overhead is
shared by many commits under load and an idle caller's commit leaves at once.
On a standby's refusal, an unreachable leader, a fenced leader or a timeout,
the leader is looked up again and the commits retried until their deadline.
Every request carries an idempotency key (one is made up if the caller has
none), so a retry of a commit whose answer was lost is answered with the
first outcome instead of applying again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

import grpc
from kazoo.exceptions import NoNodeError

from syncline._errors import (
    ConfigError,
    FencedError,
    InvalidWriteSetError,
    SynclineError,
    UnavailableError,
)
from syncline.cluster._tls import ServiceTls, service_channel
from syncline.cluster._wire import (
    TXN_GRPC_OPTIONS,
    outcome_from_proto,
    request_to_proto,
    response_from_proto,
)
from syncline.cluster._zk import ZkSession
from syncline.txn import CommitOutcome, CommitRequest
from syncline.v1 import syncline_pb2 as pb
from syncline.v1 import syncline_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

_RETRY_CODES = {
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNKNOWN,
}
_FIRST_BACKOFF_SECONDS = 0.02
_MAX_BACKOFF_SECONDS = 0.5
_BATCH_BYTES = 4 * 1024 * 1024
"""Commits beyond this many bytes wait for the next call, so large documents do not
make one huge message."""


@dataclass
class _Queued:
    """One caller's commit, from its first send until it is answered."""

    message: pb.CommitRequest
    deadline: float
    future: asyncio.Future[CommitOutcome] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    backoff: float = _FIRST_BACKOFF_SECONDS
    size: int = 0
    """The message's encoded size."""


class RemoteCommitter:
    """A CommitClient that talks to whichever txn node currently leads."""

    def __init__(
        self,
        zk_hosts: str,
        *,
        zk_path: str = "/syncline/txn",
        failover_timeout_seconds: float = 30.0,
        rpc_timeout_seconds: float = 10.0,
        max_batch: int = 256,
        max_calls_in_flight: int = 4,
        routes: Mapping[str, str] | None = None,
        tls: ServiceTls | None = None,
    ) -> None:
        """``max_batch``: most commits in one call. ``max_calls_in_flight``: calls
        sent before waiting for an answer; commits queue behind them and go together.
        ``routes``: how to reach a leader's announced address from here (e.g. through
        a region's link to the primary region), ``{announced: reachable}``."""
        self._zk = ZkSession(zk_hosts)
        self._leader_path = f"{zk_path.rstrip('/')}/leader"
        self._failover_timeout = failover_timeout_seconds
        self._rpc_timeout = rpc_timeout_seconds
        self._leader: str | None = None
        self._channel: grpc.aio.Channel | None = None
        self._stub: pb_grpc.TxnStub | None = None
        self._retired: list[grpc.aio.Channel] = []
        self._closing: set[asyncio.Future[None]] = set()
        self._routes = dict(routes or {})
        self._tls = tls
        self._max_batch = max_batch
        self._max_calls = max_calls_in_flight
        self._queue: list[_Queued] = []
        self._finding_leader = asyncio.Lock()
        self._calls: set[asyncio.Task[None]] = set()
        self._flush_scheduled = False
        self._closed = False
        self.failovers = 0
        self.calls = 0
        """CommitBatch calls sent (commits per call = commits / calls)."""

    async def start(self) -> None:
        await self._zk.start()
        loop = asyncio.get_running_loop()

        def watch(data: bytes | None, stat: object) -> None:  # kazoo's thread
            address = str(json.loads(data)["address"]) if data else None
            loop.call_soon_threadsafe(self._leader_changed, address)

        await asyncio.to_thread(self._zk.client.DataWatch, self._leader_path, watch)

    def _leader_changed(self, address: str | None) -> None:
        """A new leader (or none): calls in flight to the old one will never be answered
        by a leader, so cancel them now (they retry) instead of waiting for timeouts."""
        if self._stub is None or address == self._leader:
            return
        log.info("txn leader changed from %s to %s", self._leader, address)
        channel = self._channel
        self._retire(self._stub)
        if channel is not None:
            self._retired.remove(channel)
            closing = asyncio.ensure_future(channel.close())
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        self._closed = True
        for call in list(self._calls):
            call.cancel()
        await asyncio.gather(*self._calls, return_exceptions=True)
        self._fail(self._queue, SynclineError("the commit client closed; the outcome is unknown"))
        self._queue.clear()
        await self._drop_channel()
        await self._zk.close()

    async def __aenter__(self) -> RemoteCommitter:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def commit(self, request: CommitRequest) -> CommitOutcome:
        if self._closed:
            raise SynclineError("the commit client is closed")
        if request.idempotency_key is None:
            key = f"rc|{uuid.uuid4().hex}"
            request = dataclasses.replace(request, idempotency_key=key, fresh_key=True)
        message = request_to_proto(request)
        queued = _Queued(
            message, time.monotonic() + self._failover_timeout, size=message.ByteSize()
        )
        self._queue.append(queued)
        if not self._flush_scheduled:
            # Sent at the end of this turn of the event loop: commits submitted in
            # the same turn (a burst of callers) share one call.
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        return await queued.future

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._send_queued()

    # -- batching ------------------------------------------------------------------

    def _send_queued(self) -> None:
        """Start calls for what is queued, as far as the in-flight limit allows."""
        while self._queue and len(self._calls) < self._max_calls and not self._closed:
            # Up to max_batch commits and _BATCH_BYTES (a single larger commit goes alone).
            size, count = 0, 0
            for queued in self._queue[: self._max_batch]:
                size += queued.size
                if count and size > _BATCH_BYTES:
                    break
                count += 1
            batch = self._queue[:count]
            del self._queue[:count]
            call = asyncio.ensure_future(self._send(batch))
            self._calls.add(call)
            call.add_done_callback(self._call_done)

    def _call_done(self, call: asyncio.Task[None]) -> None:
        self._calls.discard(call)
        if not call.cancelled() and call.exception() is not None:
            log.error("a commit call failed unexpectedly", exc_info=call.exception())
        self._send_queued()

    async def _send(self, batch: list[_Queued]) -> None:
        """One CommitBatch call; answers its callers or queues them for a retry."""
        batch = [queued for queued in batch if not queued.future.done()]  # caller gone
        if not batch:
            return
        try:
            stub = await self._current_stub(min(queued.deadline for queued in batch))
        except UnavailableError as exc:
            self._fail(batch, exc)
            return
        except asyncio.CancelledError:
            self._fail(batch, SynclineError("the commit client closed; the outcome is unknown"))
            raise
        message = pb.CommitBatchRequest(requests=[queued.message for queued in batch])
        self.calls += 1
        try:
            response = await stub.CommitBatch(message, timeout=self._rpc_timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in _RETRY_CODES:
                error_type = (
                    InvalidWriteSetError
                    if exc.code() == grpc.StatusCode.INVALID_ARGUMENT
                    else SynclineError
                )
                self._fail(batch, error_type(f"txn service error: {_detail(exc)}"))
                return
            self._retire(stub, exc.code().name)
            self._retry(batch, UnavailableError(f"the txn leader did not answer: {_detail(exc)}"))
            return
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                self._fail(batch, SynclineError("the commit client closed; the outcome is unknown"))
                raise
            # grpc cancels calls on a channel retired after a leader change: retry.
            self._retire(stub)
            self._retry(batch, UnavailableError("the txn leader changed during the call"))
            return
        if len(response.responses) != len(batch):
            self._fail(batch, SynclineError("the txn service answered the wrong number of commits"))
            return
        retry: list[_Queued] = []
        fenced = False
        for queued, answer in zip(batch, response.responses, strict=True):
            result = response_from_proto(answer)
            if isinstance(result, UnavailableError | FencedError):
                # Not committed (fenced), or not known to be (storage failed mid-write):
                # the key makes sending it again safe either way.
                retry.append(queued)
                fenced = fenced or isinstance(result, FencedError)
            else:
                _settle(queued, result)
        if fenced:
            self._retire(stub)
        if retry:
            self._retry(retry, UnavailableError("the txn leader could not commit it"))

    def _retry(self, batch: list[_Queued], why: UnavailableError) -> None:
        """Queue ``batch`` again after its backoff; fail what is past its deadline."""
        now = time.monotonic()
        expired = [queued for queued in batch if now > queued.deadline]
        self._fail(
            expired,
            UnavailableError(
                f"no txn leader answered within {self._failover_timeout:.0f} s ({why.message})"
            ),
        )
        loop = asyncio.get_running_loop()
        for queued in batch:
            if now > queued.deadline:
                continue
            # Sent before, so the key is no longer fresh: the leader must look for it.
            queued.message.fresh_key = False
            delay = queued.backoff * (0.5 + random.random())
            queued.backoff = min(queued.backoff * 2, _MAX_BACKOFF_SECONDS)
            loop.call_later(delay, self._requeue, queued)

    def _requeue(self, queued: _Queued) -> None:
        if self._closed:
            _settle(queued, SynclineError("the commit client closed; the outcome is unknown"))
            return
        self._queue.append(queued)
        self._send_queued()

    @staticmethod
    def _fail(batch: list[_Queued], error: SynclineError) -> None:
        for queued in batch:
            _settle(queued, error)

    async def find_idempotent(self, key: str) -> CommitOutcome | None:
        message = pb.FindCommitRequest(idempotency_key=key)
        response = await self._call(
            lambda stub: stub.FindCommit(message, timeout=self._rpc_timeout)
        )
        assert isinstance(response, pb.FindCommitResponse)
        return outcome_from_proto(response.committed) if response.HasField("committed") else None

    async def deploy(self, bundle_json: str, *, dry_run: bool) -> pb.DeployResponse:
        """Deploy a new version of the app through the leader (see TxnNode.deploy);
        ConfigError carries the leader's reason for refusing it."""
        message = pb.DeployRequest(bundle_json=bundle_json, dry_run=dry_run)
        # Applying a schema backfills indexes: allow it far longer than a commit.
        response = await self._call(
            lambda stub: stub.Deploy(message, timeout=self._rpc_timeout * 30),
            refused=ConfigError,
        )
        assert isinstance(response, pb.DeployResponse)
        return response

    async def _call(
        self, rpc: object, *, refused: type[SynclineError] = InvalidWriteSetError
    ) -> object:
        """``rpc(stub)`` on the leader, retried across failovers; INVALID_ARGUMENT
        raises ``refused``."""
        deadline = time.monotonic() + self._failover_timeout
        backoff = _FIRST_BACKOFF_SECONDS
        while True:
            stub = await self._current_stub(deadline)
            try:
                return await rpc(stub)  # type: ignore[operator]
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                    raise refused(_detail(exc)) from exc
                if exc.code() not in _RETRY_CODES:
                    raise SynclineError(f"txn service error: {_detail(exc)}") from exc
                self._retire(stub, exc.code().name)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                # grpc cancels calls on a channel another caller retired: just retry.
                self._retire(stub)
            if time.monotonic() > deadline:
                raise UnavailableError(
                    f"no txn leader answered within {self._failover_timeout:.0f} s"
                )
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)

    async def _current_stub(self, deadline: float) -> pb_grpc.TxnStub:
        if self._stub is not None:
            return self._stub
        async with self._finding_leader:  # one channel per leader, however many callers
            if self._stub is not None:
                return self._stub
            return await self._find_leader(deadline)

    async def _find_leader(self, deadline: float) -> pb_grpc.TxnStub:
        while True:
            address = await self._read_leader()
            if address is not None:
                self._leader = address
                self._channel = service_channel(
                    self._routes.get(address, address), self._tls, options=TXN_GRPC_OPTIONS
                )
                self._stub = pb_grpc.TxnStub(self._channel)
                return self._stub
            if time.monotonic() > deadline:
                raise UnavailableError(
                    f"no txn leader announced itself within {self._failover_timeout:.0f} s"
                )
            await asyncio.sleep(0.05)

    async def _read_leader(self) -> str | None:
        client = self._zk.client

        def read() -> str | None:
            try:
                data, _ = client.get(self._leader_path)
            except NoNodeError:
                return None
            return str(json.loads(data)["address"])

        try:
            return await asyncio.to_thread(read)
        except Exception as exc:  # ZooKeeper unreachable for now: retry until the deadline
            log.debug("reading the txn leader failed: %r", exc)
            return None

    def _retire(self, stub: pb_grpc.TxnStub, reason: str | None = None) -> None:
        """Stop using ``stub``'s channel for new calls (once, however many callers fail).

        The channel is closed only at shutdown: closing it now would cancel the
        calls other callers still have in flight on it. ``reason`` is logged by
        the caller that retires it, not by every caller whose call failed on it.
        """
        if self._stub is stub and self._channel is not None:
            if reason is not None:
                log.info("txn leader %s unusable (%s); looking it up again", self._leader, reason)
            self.failovers += 1
            self._retired.append(self._channel)
            self._channel, self._stub = None, None

    async def _drop_channel(self) -> None:
        channels = [*self._retired, *([self._channel] if self._channel is not None else [])]
        self._retired, self._channel, self._stub = [], None, None
        for channel in channels:
            await channel.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


def _detail(exc: grpc.aio.AioRpcError) -> str:
    return str(exc.details() or exc.code().name)


def _settle(queued: _Queued, result: CommitOutcome | SynclineError) -> None:
    if queued.future.done():  # the caller was cancelled
        return
    if isinstance(result, CommitOutcome):
        queued.future.set_result(result)
    else:
        queued.future.set_exception(result)
