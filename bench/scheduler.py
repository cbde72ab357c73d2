"""Scheduled functions: burst throughput and lateness, a local cluster against embedded mode.

Two targets serving bench/app, measured the same way in one run:

- ``embedded``: ``syncline dev`` as one child process (its scheduler in-process);
- ``cluster``: ``syncline cluster``'s processes (PostgreSQL with fsync on,
  ZooKeeper, Redis, 2 txn, 2 sync, 1 gateway, 2 schedulers, one active).

Two phases per target, driven over the HTTP API:

- ``burst``: ``--burst`` jobs (scheduled mutations, each inserting one row) all
  due at the same moment, a few seconds ahead; the rate is jobs divided by the
  time from that moment to the last job's start.
- ``steady``: ``--rate`` mutations per second for ``--seconds``, each scheduling
  one job due at once; lateness is the job's start (taken inside the scheduled
  mutation) minus its due time, both on the server's clock.

Goals: >= 1,000 scheduled mutations/s on the local cluster; lateness p99 <= 50 ms.

Run: ``python bench/scheduler.py [--burst 5000] [--rate 100] [--seconds 10] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from _common import (
    format_table,
    free_port,
    local_cluster,
    log,
    machine_description,
    run_server,
    syncline_argv,
    write_json,
)

RATE_GOAL = 1000.0
LATENESS_GOAL_P99_MS = 50.0
BURST_LEAD_SECONDS = 3.0
"""How far ahead the burst is due: time to schedule every job before it."""


@contextlib.asynccontextmanager
async def embedded() -> AsyncIterator[str]:
    port = free_port()
    async with run_server("syncline", syncline_argv(port), port) as server:
        yield server.url


@contextlib.asynccontextmanager
async def cluster() -> AsyncIterator[str]:
    async with local_cluster("scheduler") as local:
        yield local.gateway_url


TARGETS = {"embedded": embedded, "cluster": cluster}


class Api:
    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self._session = session
        self._url = url

    async def call(self, kind: str, path: str, args: dict[str, Any]) -> Any:
        body = {"path": path, "args": args, "format": "json"}
        async with self._session.post(f"{self._url}/api/{kind}", json=body) as response:
            reply = await response.json()
        if reply.get("status") != "success":
            raise RuntimeError(f"{path} failed: {reply}")
        return reply["value"]

    async def ticks(self, run: str, expected: int, timeout: float) -> list[list[float]]:
        deadline = time.monotonic() + timeout
        while True:
            ticks: list[list[float]] = await self.call("query", "jobs:ticks", {"run": run})
            if len(ticks) >= expected or time.monotonic() > deadline:
                return ticks
            await asyncio.sleep(0.5)


async def burst(api: Api, jobs: int) -> dict[str, Any]:
    run = f"burst-{uuid.uuid4().hex[:8]}"
    # Due a few seconds from the server's now: the burst is scheduled well before.
    due = time.time() * 1000.0 + BURST_LEAD_SECONDS * 1000.0
    for start in range(0, jobs, 1000):
        count = min(1000, jobs - start)
        await api.call(
            "mutation", "jobs:schedule_burst", {"run": run, "count": float(count), "at": due}
        )
    ticks = await api.ticks(run, jobs, timeout=BURST_LEAD_SECONDS + 120)
    last = max(started for _, started in ticks) if ticks else due
    seconds = max(last - due, 1.0) / 1000.0
    return {"jobs": len(ticks), "seconds": seconds, "rate": len(ticks) / seconds}


async def steady(api: Api, rate: float, seconds: float) -> dict[str, Any]:
    run = f"steady-{uuid.uuid4().hex[:8]}"
    count = int(rate * seconds)
    start = time.monotonic()
    pending: set[asyncio.Task[Any]] = set()
    for i in range(count):
        await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
        task = asyncio.create_task(api.call("mutation", "jobs:schedule_now", {"run": run}))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)
    ticks = await api.ticks(run, count, timeout=60)
    lateness = sorted(max(0.0, started - due) for due, started in ticks)
    cuts = statistics.quantiles(lateness, n=100) if len(lateness) > 1 else [0.0] * 99
    return {"jobs": len(ticks), "p50_ms": cuts[49], "p99_ms": cuts[98], "max_ms": lateness[-1]}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    for target, servers in TARGETS.items():
        async with servers() as url, aiohttp.ClientSession() as session:
            api = Api(session, url)
            log(f"{target}: {args.burst} jobs due at once")
            runs.append({"target": target, "phase": "burst", **await burst(api, args.burst)})
            log(f"{target}: {args.rate:g} jobs/s for {args.seconds:g} s")
            runs.append(
                {"target": target, "phase": "steady", **await steady(api, args.rate, args.seconds)}
            )
    return {"benchmark": "scheduler", "machine": machine_description(), "runs": runs}


def table(results: dict[str, Any]) -> str:
    headers = ["target", "phase", "jobs run", "jobs/s", "lateness p50 ms", "p99 ms", "max ms"]
    rows = []
    for r in results["runs"]:
        nan = float("nan")
        rows.append(
            [
                r["target"],
                r["phase"],
                r["jobs"],
                round(r["rate"]) if "rate" in r else nan,
                r.get("p50_ms", nan),
                r.get("p99_ms", nan),
                r.get("max_ms", nan),
            ]
        )
    return format_table(headers, rows)


def check_goals(results: dict[str, Any]) -> list[str]:
    lines = []
    for r in results["runs"]:
        if r["target"] != "cluster":
            continue
        if r["phase"] == "burst":
            met = r["rate"] >= RATE_GOAL
            lines.append(
                f"cluster burst: {r['rate']:.0f} jobs/s (goal >= {RATE_GOAL:.0f}): "
                + ("met" if met else "MISSED")
            )
        else:
            met = r["p99_ms"] <= LATENESS_GOAL_P99_MS
            lines.append(
                f"cluster lateness p99: {r['p99_ms']:.1f} ms (goal <= {LATENESS_GOAL_P99_MS:.0f}): "
                + ("met" if met else "MISSED")
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=5000, help="jobs due at the same moment")
    parser.add_argument("--rate", type=float, default=100.0, help="jobs scheduled per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the steady phase")
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    print("Scheduled functions (jobs are mutations inserting one row)")
    print(table(results))
    for line in check_goals(results):
        print(line)
    write_json(args.json, results)


if __name__ == "__main__":
    main()
