"""Committing through the txn leader over gRPC, across failovers.

The leader announces itself in ZooKeeper; callers read the announcement, call
``Txn.Commit``, and on a standby's refusal, an unreachable leader, a fenced
leader or a timeout, look the leader up again and retry until a deadline.
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

import grpc
from kazoo.exceptions import NoNodeError

from syncline._errors import (
    CatalogChangedError,
    InvalidWriteSetError,
    OccConflictError,
    SynclineError,
    UnavailableError,
)
from syncline.cluster._wire import outcome_from_proto, request_to_proto
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


class RemoteCommitter:
    """A CommitClient that talks to whichever txn node currently leads."""

    def __init__(
        self,
        zk_hosts: str,
        *,
        zk_path: str = "/syncline/txn",
        failover_timeout_seconds: float = 30.0,
        rpc_timeout_seconds: float = 10.0,
    ) -> None:
        self._zk = ZkSession(zk_hosts)
        self._leader_path = f"{zk_path.rstrip('/')}/leader"
        self._failover_timeout = failover_timeout_seconds
        self._rpc_timeout = rpc_timeout_seconds
        self._leader: str | None = None
        self._channel: grpc.aio.Channel | None = None
        self._stub: pb_grpc.TxnStub | None = None
        self._retired: list[grpc.aio.Channel] = []
        self._closing: set[asyncio.Future[None]] = set()
        self.failovers = 0

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
        await self._drop_channel()
        await self._zk.close()

    async def __aenter__(self) -> RemoteCommitter:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def commit(self, request: CommitRequest) -> CommitOutcome:
        if request.idempotency_key is None:
            request = dataclasses.replace(request, idempotency_key=f"rc|{uuid.uuid4().hex}")
        message = request_to_proto(request)
        response = await self._call(lambda stub: stub.Commit(message, timeout=self._rpc_timeout))
        assert isinstance(response, pb.CommitResponse)
        if response.HasField("conflict"):
            if response.conflict.catalog_changed:
                raise CatalogChangedError(response.conflict.reason)
            raise OccConflictError(response.conflict.reason)
        return outcome_from_proto(response.committed)

    async def find_idempotent(self, key: str) -> CommitOutcome | None:
        message = pb.FindCommitRequest(idempotency_key=key)
        response = await self._call(
            lambda stub: stub.FindCommit(message, timeout=self._rpc_timeout)
        )
        assert isinstance(response, pb.FindCommitResponse)
        return outcome_from_proto(response.committed) if response.HasField("committed") else None

    async def _call(self, rpc: object) -> object:
        deadline = time.monotonic() + self._failover_timeout
        backoff = 0.02
        while True:
            stub = await self._current_stub(deadline)
            try:
                return await rpc(stub)  # type: ignore[operator]
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                    raise InvalidWriteSetError(_detail(exc)) from exc
                if exc.code() not in _RETRY_CODES:
                    raise SynclineError(f"txn service error: {_detail(exc)}") from exc
                log.info(
                    "txn leader %s unusable (%s); looking it up again",
                    self._leader,
                    exc.code().name,
                )
                self._retire(stub)
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
            backoff = min(backoff * 2, 0.5)

    async def _current_stub(self, deadline: float) -> pb_grpc.TxnStub:
        if self._stub is not None:
            return self._stub
        while True:
            address = await self._read_leader()
            if address is not None:
                self._leader = address
                self._channel = grpc.aio.insecure_channel(address)
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

    def _retire(self, stub: pb_grpc.TxnStub) -> None:
        """Stop using ``stub``'s channel for new calls (once, however many callers fail).

        The channel is closed only at shutdown: closing it now would cancel the
        calls other callers still have in flight on it.
        """
        if self._stub is stub and self._channel is not None:
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
