"""A txn service cluster on real PostgreSQL and ZooKeeper, and runners that use it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from syncline.app import load_app
from syncline.cluster import (
    ClusterDeployments,
    Gateway,
    GatewayConfig,
    RemoteCommitter,
    SyncConfig,
    SyncNode,
)
from syncline.devservers import free_port
from syncline.runtime import ANONYMOUS, FunctionRunner
from syncline.storage import PostgresStorage, Storage
from syncline.sync import decode_ts
from syncline.v1 import syncline_pb2 as pb
from syncline.v1 import syncline_pb2_grpc as pb_grpc
from tests.fixtures.infra import assert_eventually

ROOT = Path(__file__).resolve().parents[2]
BANK = Path(__file__).resolve().parent / "apps" / "bank"
SESSION_TIMEOUT_SECONDS = 2.0


class ServiceProcess:
    """One ``services/<name>/main.py`` process, stopped by pid."""

    def __init__(
        self, service: str, args: list[str], log_path: Path, env: dict[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.http_port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._args = [
            sys.executable,
            str(ROOT / "services" / service / "main.py"),
            *args,
            "--port",
            str(self.port),
            "--http-port",
            str(self.http_port),
        ]
        self._env = env or {}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self._args,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self._env, "PYTHONUNBUFFERED": "1"},
            )

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(10)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 15 s; the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def health(self) -> pb.HealthResponse | None:
        async with grpc.aio.insecure_channel(self.address) as channel:
            try:
                return await pb_grpc.HealthStub(channel).Check(pb.HealthRequest(), timeout=1.0)
            except grpc.aio.AioRpcError:
                return None


class TxnProcess(ServiceProcess):
    def __init__(self, pg_dsn: str, zk_hosts: str, log_path: Path) -> None:
        args = ["--app", str(BANK), "--pg-dsn", pg_dsn, "--zk-hosts", zk_hosts]
        args += ["--session-timeout", str(SESSION_TIMEOUT_SECONDS)]
        super().__init__("txn", args, log_path)


class TxnCluster:
    def __init__(self, nodes: list[TxnProcess]) -> None:
        self.nodes = nodes

    async def leader(
        self, timeout: float = 30.0, *, exclude: TxnProcess | None = None
    ) -> TxnProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node is exclude:
                    continue
                health = await node.health()
                if health is not None and health.role == "leader":
                    return node
            await asyncio.sleep(0.05)
        raise TimeoutError("no txn leader:\n" + "\n".join(n.log()[-3000:] for n in self.nodes))


@pytest.fixture
async def txn_cluster(
    request: pytest.FixtureRequest, pg_dsn: str, zk_hosts: str, tmp_path: Path
) -> AsyncIterator[TxnCluster]:
    count = getattr(request, "param", 2)
    nodes = [TxnProcess(pg_dsn, zk_hosts, tmp_path / f"txn{i}.log") for i in range(count)]
    for node in nodes:
        node.start()
    cluster = TxnCluster(nodes)
    try:
        await cluster.leader()
        yield cluster
    finally:
        for node in nodes:
            node.stop()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            for i, node in enumerate(nodes):
                print(f"--- txn{i} log ---\n{node.log()[-6000:]}")


class Runner:
    """Runs the bank app's functions the way a sync node will: reads from
    PostgreSQL, commits through the txn leader."""

    def __init__(self, runner: FunctionRunner, committer: RemoteCommitter) -> None:
        self.runner = runner
        self.committer = committer

    async def mutation(self, path: str, args: dict[str, Any] | None = None, **kw: Any) -> Any:
        return (await self.runner.run_mutation(path, args or {}, ANONYMOUS, **kw)).value

    async def query(self, path: str, args: dict[str, Any] | None = None) -> Any:
        return (await self.runner.run_query(path, args or {}, ANONYMOUS)).value


RunnerFactory = Callable[[], Awaitable[Runner]]


@pytest.fixture
async def make_runner(
    pg_dsn: str, zk_hosts: str, txn_cluster: TxnCluster
) -> AsyncIterator[RunnerFactory]:
    opened: list[tuple[PostgresStorage, RemoteCommitter]] = []

    async def make() -> Runner:
        storage = PostgresStorage(pg_dsn)
        await storage.open()
        committer = RemoteCommitter(zk_hosts)
        await committer.start()
        opened.append((storage, committer))
        deployments = ClusterDeployments(storage, load_app(BANK))
        await deployments.refresh()  # the leader has applied the schema by now
        return Runner(FunctionRunner(storage, committer, deployments), committer)

    yield make
    for storage, committer in opened:
        await committer.close()
        await storage.close()


# -- sync nodes and sync-protocol clients --------------------------------------------------


SyncNodeFactory = Callable[..., Awaitable[SyncNode]]


@pytest.fixture
async def make_sync_node(
    pg_dsn: str, zk_hosts: str, txn_cluster: TxnCluster
) -> AsyncIterator[SyncNodeFactory]:
    """Start in-process sync nodes on the bank app (keyword arguments override SyncConfig)."""
    nodes: list[SyncNode] = []

    async def make(
        *, dsn: str | None = None, storage: Storage | None = None, **overrides: Any
    ) -> SyncNode:
        """``dsn``: the database the node reads (default: the primary's); or
        ``storage``, built by the test."""
        settings: dict[str, Any] = {
            "app_dir": BANK,
            "zk_hosts": zk_hosts,
            "session_timeout_seconds": SESSION_TIMEOUT_SECONDS,
            "membership_interval_seconds": 0.2,
            **overrides,
        }
        if storage is None:
            storage = PostgresStorage(dsn or pg_dsn, pool_min=1, pool_max=8)
        node = SyncNode(SyncConfig(**settings), storage)
        nodes.append(node)
        await node.start()
        return node

    yield make
    for node in nodes:
        await node.close()


SyncProcessFactory = Callable[..., Awaitable[ServiceProcess]]


@pytest.fixture
async def sync_process(
    request: pytest.FixtureRequest,
    pg_dsn: str,
    zk_hosts: str,
    txn_cluster: TxnCluster,
    tmp_path: Path,
) -> AsyncIterator[SyncProcessFactory]:
    """Start ``services/sync/main.py`` processes on the bank app, serving when returned.

    Positional arguments are extra flags; ``env`` extra environment variables.
    """
    processes: list[ServiceProcess] = []

    async def start(*flags: str, env: dict[str, str] | None = None) -> ServiceProcess:
        args = ["--app", str(BANK), "--pg-dsn", pg_dsn, "--zk-hosts", zk_hosts]
        args += ["--session-timeout", str(SESSION_TIMEOUT_SECONDS), *flags]
        process = ServiceProcess("sync", args, tmp_path / f"sync{len(processes)}.log", env)
        processes.append(process)
        process.start()
        deadline = time.monotonic() + 30
        while True:
            health = await process.health()
            if health is not None and health.status == pb.HealthResponse.SERVING:
                return process
            exited = process.process is not None and process.process.poll() is not None
            if time.monotonic() > deadline or exited:
                raise AssertionError(f"the sync process did not serve:\n{process.log()[-3000:]}")
            await asyncio.sleep(0.05)

    try:
        yield start
    finally:
        for process in processes:
            process.stop()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            for i, process in enumerate(processes):
                print(f"--- sync{i} log ---\n{process.log()[-6000:]}")


class SyncClient:
    """One ``Sync.Session`` stream speaking Convex's sync protocol as JSON frames.

    A reader task collects every frame but Pings; ``values`` holds each query's
    latest value from the Transitions seen so far, ``ts`` the last Transition's ts.
    """

    def __init__(self, address: str, *, channel: grpc.aio.Channel | None = None) -> None:
        """``channel``: share one (many sessions over one connection); else its own."""
        self._own_channel = channel is None
        self._channel = channel or grpc.aio.insecure_channel(address)
        self._call = pb_grpc.SyncStub(self._channel).Session()
        self.session_id = str(uuid.uuid4())
        self.received: list[dict[str, Any]] = []
        self.values: dict[int, Any] = {}
        self.ts = 0
        self.status: grpc.StatusCode | None = None
        """How the stream ended (None: still open)."""
        self._query_set_version = 0
        self._next_request_id = 0
        self._arrived = asyncio.Condition()
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            while True:
                message = await self._call.read()
                if message is grpc.aio.EOF:
                    break
                frame = json.loads(message.json)
                if frame["type"] == "Ping":
                    continue
                if frame["type"] == "Transition":
                    self.ts = decode_ts(frame["endVersion"]["ts"], "ts")
                    for mod in frame["modifications"]:
                        if mod["type"] == "QueryUpdated":
                            self.values[mod["queryId"]] = mod["value"]
                async with self._arrived:
                    self.received.append(frame)
                    self._arrived.notify_all()
            self.status = await self._call.code()
        except grpc.aio.AioRpcError as exc:
            self.status = exc.code()
        async with self._arrived:
            self._arrived.notify_all()

    async def send(self, frame: dict[str, Any]) -> None:
        await self._call.write(pb.ClientFrame(json=json.dumps(frame)))

    async def connect(self) -> None:
        await self.send(
            {
                "type": "Connect",
                "sessionId": self.session_id,
                "connectionCount": 0,
                "lastCloseReason": None,
                "clientTs": 0,
            }
        )

    async def subscribe(self, query_id: int, path: str, args: dict[str, Any]) -> None:
        base, self._query_set_version = self._query_set_version, self._query_set_version + 1
        await self.send(
            {
                "type": "ModifyQuerySet",
                "baseVersion": base,
                "newVersion": self._query_set_version,
                "modifications": [
                    {"type": "Add", "queryId": query_id, "udfPath": path, "args": [args]}
                ],
            }
        )

    async def mutate(self, path: str, args: dict[str, Any]) -> int:
        request_id, self._next_request_id = self._next_request_id, self._next_request_id + 1
        await self.send(
            {"type": "Mutation", "requestId": request_id, "udfPath": path, "args": [args]}
        )
        return request_id

    async def wait_until(
        self, condition: Callable[[], bool], *, what: str, timeout: float = 15.0
    ) -> None:
        """Wait (deadline, no fixed sleep) until ``condition()`` holds after some frame."""
        try:
            async with asyncio.timeout(timeout), self._arrived:
                await self._arrived.wait_for(lambda: condition() or self.status is not None)
        except TimeoutError:
            raise AssertionError(
                f"timed out after {timeout:g} s waiting for {what}; got {self.received[-5:]}"
            ) from None
        if not condition():
            raise AssertionError(f"the stream ended ({self.status}) before {what}")

    async def wait_value(self, query_id: int, value: Any, timeout: float = 15.0) -> None:
        await self.wait_until(
            lambda: self.values.get(query_id) == value,
            what=f"query {query_id} == {value!r}",
            timeout=timeout,
        )

    async def mutation_response(self, request_id: int, timeout: float = 15.0) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            return next(
                (
                    f
                    for f in self.received
                    if f["type"] == "MutationResponse" and f["requestId"] == request_id
                ),
                None,
            )

        await self.wait_until(
            lambda: find() is not None, what=f"MutationResponse {request_id}", timeout=timeout
        )
        response = find()
        assert response is not None
        return response

    async def close(self) -> None:
        self._reader.cancel()
        await asyncio.wait([self._reader], timeout=10)
        if self._own_channel:
            await self._channel.close()
        else:
            self._call.cancel()


SyncClientFactory = Callable[[str], Awaitable[SyncClient]]


@pytest.fixture
async def sync_client() -> AsyncIterator[SyncClientFactory]:
    """Open connected ``SyncClient`` streams to a sync node address; closed after the test."""
    clients: list[SyncClient] = []

    async def open_client(address: str) -> SyncClient:
        client = SyncClient(address)
        clients.append(client)
        await client.connect()
        return client

    yield open_client
    for client in clients:
        await client.close()


# -- gateways --------------------------------------------------------------------------------


GatewayFactory = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def make_gateway(zk_hosts: str) -> AsyncIterator[GatewayFactory]:
    """Start in-process gateways (with a gRPC port) that know at least one sync node."""
    gateways: list[Gateway] = []

    async def make(**overrides: Any) -> Gateway:
        settings: dict[str, Any] = {"zk_hosts": zk_hosts, "grpc_port": 0, **overrides}
        gateway = Gateway(GatewayConfig(**settings))
        gateways.append(gateway)
        await gateway.start()
        await assert_eventually(lambda: gateway.ready, what="the gateway to see a sync node")
        return gateway

    yield make
    for gateway in gateways:
        await gateway.close()
