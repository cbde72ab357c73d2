"""A txn service cluster on real PostgreSQL and ZooKeeper, and runners that use it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from syncline.app import load_app
from syncline.cluster import ClusterDeployments, RemoteCommitter
from syncline.devservers import free_port
from syncline.runtime import ANONYMOUS, FunctionRunner
from syncline.storage import PostgresStorage
from syncline.v1 import syncline_pb2 as pb
from syncline.v1 import syncline_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[2]
BANK = Path(__file__).resolve().parent / "apps" / "bank"
SESSION_TIMEOUT_SECONDS = 2.0


class TxnProcess:
    """One ``services/txn/main.py`` process, stopped by pid."""

    def __init__(self, pg_dsn: str, zk_hosts: str, log_path: Path) -> None:
        self.port = free_port()
        self.http_port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._args = [
            sys.executable,
            str(ROOT / "services" / "txn" / "main.py"),
            "--app",
            str(BANK),
            "--pg-dsn",
            pg_dsn,
            "--zk-hosts",
            zk_hosts,
            "--port",
            str(self.port),
            "--http-port",
            str(self.http_port),
            "--session-timeout",
            str(SESSION_TIMEOUT_SECONDS),
        ]
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self._args,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def health(self) -> pb.HealthResponse | None:
        async with grpc.aio.insecure_channel(self.address) as channel:
            try:
                return await pb_grpc.HealthStub(channel).Check(pb.HealthRequest(), timeout=1.0)
            except grpc.aio.AioRpcError:
                return None


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
