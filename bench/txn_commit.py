"""Commit throughput and latency: Syncline's cluster write path against raw PostgreSQL.

Starts PostgreSQL (fsync on, so every commit is durable) and ZooKeeper as
child processes in a temporary directory, then the txn service
(``services/txn/main.py``) on the bench/txn_app app, and waits until it leads.
Then, one target at a time, ``--concurrency`` callers in a closed loop for
``--seconds`` after ``--warmup`` unmeasured seconds:

- ``postgres/raw``: each caller has its own psycopg 3 async connection and
  runs ``INSERT INTO events(key) VALUES (%s)`` + ``COMMIT`` (a table with a
  bigserial primary key, in its own database on the same server);
- ``syncline/mutation``: the ``events:insert`` mutation (one document) through
  a ``FunctionRunner`` that reads from PostgreSQL (``PostgresStorage``) and
  commits through a ``RemoteCommitter`` (leader found in ZooKeeper, gRPC
  ``Txn.CommitBatch``), built as tests/cluster/conftest.py builds its ``Runner``;
  latency is mutation start -> result;
- ``syncline/commit-rpc``: ``RemoteCommitter.commit`` alone with a one-document
  insert ``CommitRequest``, built by hand (untimed) just before each call from
  the same ``DataModel`` the runner uses: the txn service's share of the above.

The runner and the RemoteCommitter run in this (load generator) process, as
they would in a sync node, so "client cpu" includes them. The table shows
commits/s, p50/p99 latency, errors, the ratio to raw PostgreSQL and the CPU
used by PostgreSQL (all its processes), the txn service, ZooKeeper, this
process and everything else, in percent of one core. Results go to stdout;
progress to stderr.

Run: ``python bench/txn_commit.py [--seconds 10] [--warmup 2] [--concurrency 64] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import psycopg
from _common import (
    BENCH_DIR,
    CpuMeter,
    free_port,
    log,
    machine_description,
    print_runs,
    summarize_ms,
    write_json,
)

from syncline import SynclineError
from syncline.app import load_app
from syncline.cluster import ClusterDeployments, RemoteCommitter
from syncline.devservers import LocalPostgres, LocalZooKeeper, log_tail
from syncline.runtime import ANONYMOUS, FunctionRunner
from syncline.storage import DocumentWrite, IndexKeyChange, PostgresStorage
from syncline.txn import CommitRequest, ReadSet
from syncline.v1 import syncline_pb2 as pb
from syncline.v1 import syncline_pb2_grpc as pb_grpc

TXN_APP_DIR = BENCH_DIR / "txn_app"
TXN_MAIN = BENCH_DIR.parent / "services" / "txn" / "main.py"
MUTATION = "events:insert"
KEYS = 100
ERROR_BACKOFF_SECONDS = 0.01
LEADER_TIMEOUT_SECONDS = 60.0
TXN_STOP_TIMEOUT_SECONDS = 15.0
SNAPSHOT_REFRESH_SECONDS = 0.02
"""How stale the commit-rpc requests' snapshot ts may get. A runner's snapshot is
a few ms old at commit, and the leader's OCC check walks every commit newer than
the snapshot, so a staler ts would make the leader's work look bigger than it is."""

THROUGHPUT_GOAL_RATIO = 0.5
LATENCY_GOAL_P99_MS = 20.0

RAW_SCHEMA = "CREATE TABLE events(id bigserial PRIMARY KEY, key text NOT NULL)"
RAW_INSERT = "INSERT INTO events(key) VALUES (%s)"


async def _nothing_to_prepare(caller: int) -> None:
    return None


@dataclass(frozen=True)
class Workload:
    """What each caller does in its loop: ``prepare`` (untimed), then ``commit`` (timed).

    ``commit(caller, prepared)`` returns once its transaction is durable and
    raises if it failed; ``prepared`` is what ``prepare(caller)`` returned.
    """

    commit: Callable[[int, Any], Awaitable[None]]
    prepare: Callable[[int], Awaitable[Any]] = _nothing_to_prepare


# Errors a caller counts and carries on after; anything else is a bug and stops the run.
CALLER_ERRORS = (psycopg.Error, SynclineError, grpc.aio.AioRpcError)


# -- timed runs ----------------------------------------------------------------


@dataclass
class RunStats:
    """What one timed run observed."""

    target: str
    concurrency: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None
    cpu: dict[str, float] = field(default_factory=dict)

    def error(self, what: str) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = what

    def summary(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "concurrency": self.concurrency,
            "seconds": round(self.seconds, 3),
            "ok": len(self.latencies),
            "ok_per_s": len(self.latencies) / self.seconds if self.seconds else 0.0,
            "errors": self.errors,
            "first_error": self.first_error,
            **summarize_ms(self.latencies),
            **self.cpu,
        }


async def timed_run(
    target: str, concurrency: int, seconds: float, workload: Workload, servers: dict[str, int]
) -> RunStats:
    """``concurrency`` callers in a closed loop until ``seconds`` have passed.

    Transactions still in flight at the deadline are awaited but not counted.
    CPU of each server (with its child processes) and of this process is
    sampled over the window.
    """
    stats = RunStats(target, concurrency)
    deadline = time.perf_counter() + seconds

    async def caller(index: int) -> None:
        while True:
            prepared = await workload.prepare(index)
            start = time.perf_counter()
            if start >= deadline:
                return
            try:
                await workload.commit(index, prepared)
            except CALLER_ERRORS as exc:
                stats.error(f"{type(exc).__name__}: {exc}"[:300])
                await asyncio.sleep(ERROR_BACKOFF_SECONDS)
                continue
            done = time.perf_counter()
            if done <= deadline:
                stats.latencies.append(done - start)

    meter = CpuMeter(servers, with_descendants=True)
    await asyncio.gather(*(caller(i) for i in range(concurrency)))
    stats.cpu = meter.stop()
    stats.seconds = seconds
    return stats


async def measure(
    target: str,
    workload: Workload,
    *,
    servers: dict[str, int],
    concurrency: int,
    seconds: float,
    warmup_seconds: float,
) -> RunStats:
    """Warm up (unmeasured), then measure one target."""
    if warmup_seconds > 0:
        log(f"{target}: warming up for {warmup_seconds:g} s")
        await timed_run(target, concurrency, warmup_seconds, workload, servers)
    log(f"{target}: measuring {concurrency} callers for {seconds:g} s")
    stats = await timed_run(target, concurrency, seconds, workload, servers)
    log(f"{target}: {len(stats.latencies) / seconds:.0f} commits/s, {stats.errors} errors")
    return stats


# -- servers -------------------------------------------------------------------


@dataclass
class Servers:
    """PostgreSQL, ZooKeeper and the txn service, all running."""

    postgres: LocalPostgres
    zookeeper: LocalZooKeeper
    syncline_dsn: str
    raw_dsn: str
    txn_pid: int

    def pids(self) -> dict[str, int]:
        """Process ids by the name their CPU is reported under."""
        assert self.postgres.pid is not None and self.zookeeper.pid is not None
        return {"pg": self.postgres.pid, "txn": self.txn_pid, "zk": self.zookeeper.pid}


@contextlib.asynccontextmanager
async def local_servers(root: Path) -> AsyncIterator[tuple[LocalPostgres, LocalZooKeeper]]:
    """PostgreSQL (fsync on) and ZooKeeper under ``root``, stopped on exit."""
    postgres = LocalPostgres(root / "postgres" / "data", fsync=True)
    zookeeper = LocalZooKeeper(root / "zookeeper")
    try:
        log("starting PostgreSQL (fsync on) and ZooKeeper")
        await asyncio.gather(postgres.start(), zookeeper.start())
        log(f"PostgreSQL on port {postgres.port} (pid {postgres.pid}), data {postgres.data_dir}")
        log(f"ZooKeeper on {zookeeper.hosts} (pid {zookeeper.pid})")
        yield postgres, zookeeper
    finally:
        for server in (postgres, zookeeper):
            try:
                await server.stop()
            except Exception as exc:  # stop the other one regardless
                log(f"stopping {type(server).__name__} failed: {exc}")


async def txn_role(address: str) -> str | None:
    """The txn node's role from gRPC ``Health.Check`` (None if it does not answer)."""
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            health = await pb_grpc.HealthStub(channel).Check(pb.HealthRequest(), timeout=1.0)
        except grpc.aio.AioRpcError:
            return None
    return str(health.role)


@contextlib.asynccontextmanager
async def txn_service(dsn: str, zk_hosts: str, log_path: Path) -> AsyncIterator[int]:
    """Run ``services/txn/main.py`` until it reports role "leader"; yield its pid.

    It gets its own session, so a Ctrl+C reaches only this process, which then
    stops it with SIGTERM (SIGKILL if it does not exit in time).
    """
    port = free_port()
    address = f"127.0.0.1:{port}"
    argv = [sys.executable, str(TXN_MAIN), "--app", str(TXN_APP_DIR)]
    argv += ["--pg-dsn", dsn, "--zk-hosts", zk_hosts, "--port", str(port)]
    with log_path.open("ab") as output:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=output,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + LEADER_TIMEOUT_SECONDS
        while (role := await txn_role(address)) != "leader":
            if process.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the txn service did not lead (role {role}, exit {process.returncode}):\n"
                    + log_tail(log_path)
                )
            await asyncio.sleep(0.05)
        log(f"txn service leads on {address} (pid {process.pid}, log {log_path})")
        yield process.pid
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), TXN_STOP_TIMEOUT_SECONDS)
            except TimeoutError:
                log(f"txn service ignored SIGTERM; killing pid {process.pid}")
                process.kill()
                await process.wait()


@contextlib.asynccontextmanager
async def all_servers() -> AsyncIterator[Servers]:
    """Every server, in a temporary directory removed on exit (also on errors)."""
    # PostgreSQL runs as the postgres user, which must be able to enter the directory.
    root = Path(tempfile.mkdtemp(prefix="bench-txn-"))
    root.chmod(0o755)
    try:
        async with local_servers(root) as (postgres, zookeeper):
            syncline_dsn = await postgres.create_database("syncline")
            raw_dsn = await postgres.create_database("raw")
            async with txn_service(syncline_dsn, zookeeper.hosts, root / "txn.log") as txn_pid:
                yield Servers(postgres, zookeeper, syncline_dsn, raw_dsn, txn_pid)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- targets -------------------------------------------------------------------


@contextlib.asynccontextmanager
async def raw_postgres(dsn: str, concurrency: int) -> AsyncIterator[Workload]:
    """One connection per caller; a transaction is INSERT + COMMIT."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
        await admin.execute(RAW_SCHEMA)
    connections = await asyncio.gather(
        *(psycopg.AsyncConnection.connect(dsn) for _ in range(concurrency))
    )

    async def insert(index: int, _: None) -> None:
        conn = connections[index]
        try:
            await conn.execute(RAW_INSERT, (f"k{index % KEYS}",))
            await conn.commit()
        except psycopg.Error:
            with contextlib.suppress(psycopg.Error):
                await conn.rollback()
            raise

    try:
        yield Workload(insert)
    finally:
        await asyncio.gather(*(conn.close() for conn in connections))


@dataclass
class ClusterClient:
    """What a sync node holds: storage, RemoteCommitter, deployments and runner."""

    storage: PostgresStorage
    committer: RemoteCommitter
    deployments: ClusterDeployments
    runner: FunctionRunner


@contextlib.asynccontextmanager
async def cluster_client(dsn: str, zk_hosts: str) -> AsyncIterator[ClusterClient]:
    """Built as tests/cluster/conftest.py builds its Runner; closed on exit."""
    storage = PostgresStorage(dsn)
    await storage.open()
    try:
        committer = RemoteCommitter(zk_hosts)
        await committer.start()
        try:
            deployments = ClusterDeployments(storage, load_app(TXN_APP_DIR))
            await deployments.refresh()  # the leader applied the schema before leading
            runner = FunctionRunner(storage, committer, deployments)
            yield ClusterClient(storage, committer, deployments, runner)
        finally:
            await committer.close()
    finally:
        await storage.close()


def run_mutation(client: ClusterClient) -> Workload:
    """The whole write path: run ``events:insert`` and commit it through the leader."""

    async def insert(index: int, _: None) -> None:
        await client.runner.run_mutation(MUTATION, {"key": f"k{index % KEYS}"}, ANONYMOUS)

    return Workload(insert)


class InsertRequests:
    """One-document insert CommitRequests, shaped exactly as the runner's.

    Built from the deployment's DataModel: a new id and creation time, the
    checked document, its key for every index of the table, an empty read set
    and a snapshot ts at most SNAPSHOT_REFRESH_SECONDS old. The idempotency key
    is left to RemoteCommitter, which makes one up, as the runner does.
    """

    def __init__(self, client: ClusterClient) -> None:
        self._storage = client.storage
        self._model = client.deployments.current.model
        self._table = self._model.require_table("events")
        self._snapshot_ts = 0
        self._taken = -math.inf

    async def build(self, key: str) -> CommitRequest:
        if time.monotonic() - self._taken > SNAPSHOT_REFRESH_SECONDS:
            self._taken = time.monotonic()  # one caller refreshes; the rest go on
            self._snapshot_ts = await self._storage.max_ts()
        model, table = self._model, self._table
        doc = model.new_document(table, {"key": key}, now_ms=None)
        model.check_document(table, doc, path=table.name)
        changes = tuple(
            IndexKeyChange(index.index_id, old, new)
            for index, old, new in model.index_changes(table, None, doc)
        )
        write = DocumentWrite(doc["_id"], table.meta.table_number, doc, changes)
        return CommitRequest(
            snapshot_ts=self._snapshot_ts,
            read_set=ReadSet(),
            writes=[write],
            result_json=json.dumps(doc["_id"]),
            catalog_version=model.catalog_version,
        )


def commit_rpc(client: ClusterClient) -> Workload:
    """``RemoteCommitter.commit`` alone, with a request built before the clock starts."""
    requests = InsertRequests(client)

    async def prepare(index: int) -> CommitRequest:
        return await requests.build(f"k{index % KEYS}")

    async def commit(index: int, request: CommitRequest) -> None:
        await client.committer.commit(request)

    return Workload(commit, prepare)


# -- the whole benchmark -------------------------------------------------------


async def run(seconds: float, concurrency: int, warmup_seconds: float) -> dict[str, Any]:
    """Start the servers, measure every target one at a time; return a JSON-able result."""
    runs: list[RunStats] = []
    phase = {"concurrency": concurrency, "seconds": seconds, "warmup_seconds": warmup_seconds}
    async with all_servers() as servers:
        pids = servers.pids()
        async with raw_postgres(servers.raw_dsn, concurrency) as insert:
            runs.append(await measure("postgres/raw", insert, servers=pids, **phase))
        async with cluster_client(servers.syncline_dsn, servers.zookeeper.hosts) as client:
            runs.append(
                await measure("syncline/mutation", run_mutation(client), servers=pids, **phase)
            )
            runs.append(
                await measure("syncline/commit-rpc", commit_rpc(client), servers=pids, **phase)
            )
    summaries = [r.summary() for r in runs]
    raw_rate = summaries[0]["ok_per_s"]
    for summary in summaries:
        summary["ratio_to_raw"] = summary["ok_per_s"] / raw_rate if raw_rate else None
    results = {
        "benchmark": "txn_commit",
        "machine": machine_description(),
        "settings": phase,
        "runs": summaries,
    }
    results["goals"] = check_goals(results)
    return results


def check_goals(results: dict[str, Any]) -> list[str]:
    """One line per goal, "met: ..." or "MISSED: ...", for the syncline/mutation row."""
    row = next(r for r in results["runs"] if r["target"] == "syncline/mutation")
    ratio = row["ratio_to_raw"] or 0.0
    p99 = row["p99_ms"]
    return [
        f"{'met' if ratio >= THROUGHPUT_GOAL_RATIO else 'MISSED'}: txn service throughput "
        f"{row['ok_per_s']:.0f} commits/s = {ratio:.2f}x raw PostgreSQL "
        f"(goal >= {THROUGHPUT_GOAL_RATIO:g}x)",
        f"{'met' if p99 <= LATENCY_GOAL_P99_MS else 'MISSED'}: txn service p99 {p99:.1f} ms "
        f"at {row['concurrency']} callers (goal <= {LATENCY_GOAL_P99_MS:g} ms)",
    ]


COLUMNS = [
    ("target", "target"),
    ("callers", "concurrency"),
    ("commits/s", "ok_per_s"),
    ("p50 ms", "p50_ms"),
    ("p99 ms", "p99_ms"),
    ("errors", "errors"),
    ("x raw", "ratio_to_raw"),
    ("pg cpu %", "pg_cpu_pct"),
    ("txn cpu %", "txn_cpu_pct"),
    ("zk cpu %", "zk_cpu_pct"),
    ("client cpu %", "client_cpu_pct"),
    ("other cpu %", "other_cpu_pct"),
]


def print_report(results: dict[str, Any]) -> None:
    s = results["settings"]
    print_runs(
        f"Commit throughput (durable 1-row/1-document inserts, PostgreSQL fsync on; "
        f"{s['seconds']:g} s per target after {s['warmup_seconds']:g} s warm-up)",
        results["runs"],
        COLUMNS,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per target")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    parser.add_argument(
        "--concurrency", type=int, default=64, help="callers (transactions in flight)"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    args = parser.parse_args()
    try:
        results = asyncio.run(run(args.seconds, args.concurrency, args.warmup))
    except KeyboardInterrupt:
        log("interrupted; the servers were stopped")
        return 130
    print_report(results)
    print()
    print("\n".join(results["goals"]))
    write_json(args.json, results)
    return 0 if all(line.startswith("met") for line in results["goals"]) else 1


if __name__ == "__main__":
    sys.exit(main())
