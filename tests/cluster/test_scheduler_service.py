"""The scheduler service on real PostgreSQL and ZooKeeper, killed while it works.

Schedulers are ``services/scheduler/main.py`` processes; a kill is SIGKILL. Jobs
are scheduled through a runner as a sync node would, and their effects counted
through queries: every hit key must end at exactly 1.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from syncline.scheduler import INTERRUPTED
from tests.cluster.conftest import (
    BANK,
    SESSION_TIMEOUT_SECONDS,
    Runner,
    RunnerFactory,
    ServiceProcess,
    TxnCluster,
)

JOBS = 10_000


class Schedulers:
    def __init__(self, start: Callable[[], ServiceProcess]) -> None:
        self._start = start
        self.processes: list[ServiceProcess] = []

    def start(self) -> ServiceProcess:
        process = self._start()
        self.processes.append(process)
        return process

    async def leader(self, timeout: float = 30.0) -> ServiceProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for process in self.processes:
                if process.process is None or process.process.poll() is not None:
                    continue
                health = await process.health()
                if health is not None and health.role == "leader":
                    return process
            await asyncio.sleep(0.05)
        logs = "\n".join(p.log()[-3000:] for p in self.processes)
        raise TimeoutError(f"no scheduler leader:\n{logs}")


@pytest.fixture
async def schedulers(
    request: pytest.FixtureRequest,
    pg_dsn: str,
    zk_hosts: str,
    txn_cluster: TxnCluster,
    tmp_path: Path,
) -> AsyncIterator[Schedulers]:
    count = 0

    def start() -> ServiceProcess:
        nonlocal count
        args = ["--app", str(BANK), "--pg-dsn", pg_dsn, "--zk-hosts", zk_hosts]
        args += ["--session-timeout", str(SESSION_TIMEOUT_SECONDS)]
        process = ServiceProcess("scheduler", args, tmp_path / f"scheduler{count}.log")
        count += 1
        process.start()
        return process

    group = Schedulers(start)
    try:
        yield group
    finally:
        for process in group.processes:
            process.stop()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            for i, process in enumerate(group.processes):
                print(f"--- scheduler{i} log ---\n{process.log()[-6000:]}")


async def until(
    read: Callable[[], Awaitable[Any]],
    done: Callable[[Any], bool],
    *,
    timeout: float,
    what: str,
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {value}")
        await asyncio.sleep(0.25)


def hits(counts: dict[str, float]) -> int:
    return int(sum(counts.values()))


async def test_ten_thousand_scheduled_mutations_run_exactly_once_across_two_leader_kills(
    make_runner: RunnerFactory, schedulers: Schedulers
) -> None:
    runner = await make_runner()
    schedulers.start()
    schedulers.start()
    await schedulers.leader()
    for batch in range(JOBS // 1000):
        await runner.mutation(
            "jobs:schedule_hits", {"prefix": "k", "start": batch * 1000.0, "count": 1000.0}
        )

    async def counts() -> dict[str, float]:
        return dict(await runner.query("jobs:hit_counts"))

    for kill, progress in enumerate((2000, 5000)):
        await until(
            counts, lambda c, p=progress: hits(c) >= p, timeout=120, what=f"{progress} hits"
        )
        victim = await schedulers.leader()
        victim.kill()
        schedulers.start()  # a new standby, for the next kill
        successor = await schedulers.leader()
        assert successor is not victim, f"kill {kill + 1}: no new leader"

    states = await until(
        lambda: runner.query("jobs:job_states"),
        lambda s: s == {"success": JOBS},
        timeout=240,
        what="every job to succeed",
    )
    assert states == {"success": JOBS}
    assert await counts() == {"1": JOBS}


async def test_an_action_interrupted_by_a_kill_ends_failed_and_never_runs_again(
    make_runner: RunnerFactory, schedulers: Schedulers
) -> None:
    runner = await make_runner()
    schedulers.start()
    schedulers.start()
    job_id = await runner.mutation("jobs:schedule_slow_action", {"key": "s", "seconds": 60.0})
    await until(
        lambda: runner.query("jobs:hits_of", {"key": "s:started"}),
        lambda n: n == 1,
        timeout=60,
        what="the action to start",
    )
    (await schedulers.leader()).kill()
    job = await until(
        lambda: runner.query("jobs:job", {"id": job_id}),
        lambda j: j["state"]["kind"] != "inProgress",
        timeout=60,
        what="the new leader to end the interrupted action",
    )
    assert job["state"] == {"kind": "failed", "error": INTERRUPTED}
    await asyncio.sleep(2)
    assert await runner.query("jobs:hits_of", {"key": "s:started"}) == 1
    assert await runner.query("jobs:hits_of", {"key": "s:finished"}) == 0


async def test_pending_jobs_run_after_the_whole_cluster_restarts(
    make_runner: RunnerFactory, schedulers: Schedulers, txn_cluster: TxnCluster
) -> None:
    runner: Runner = await make_runner()
    # No scheduler runs yet: the jobs are pending when everything restarts.
    await runner.mutation("jobs:schedule_hits", {"prefix": "r", "start": 0.0, "count": 50.0})
    assert await runner.query("jobs:job_states") == {"pending": 50}
    for node in txn_cluster.nodes:
        node.stop()
    for node in txn_cluster.nodes:
        node.start()
    await txn_cluster.leader()
    schedulers.start()
    states = await until(
        lambda: runner.query("jobs:job_states"),
        lambda s: s == {"success": 50},
        timeout=120,
        what="the pending jobs to run",
    )
    assert states == {"success": 50}
    assert await runner.query("jobs:hit_counts") == {"1": 50}
