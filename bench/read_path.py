"""The cluster read path against embedded mode: update latency, fan-out, memory per session.

Two targets, measured the same way in one run, each serving bench/app:

- ``embedded``: ``syncline dev`` as one child process;
- ``cluster``: ``syncline cluster``'s processes (PostgreSQL with fsync on,
  ZooKeeper, Redis, 2 txn, 2 sync, 1 gateway) in a temporary data directory;
  clients connect to the gateway.

Two phases per target, with WebSocket sessions of the Convex sync protocol
opened from this process (as in bench/update_latency.py):

- ``updates``: ``--subscribers`` sessions over ``--queries`` distinct queries,
  ``--rate`` inserts/s for ``--seconds``; latency runs from the writer's
  MutationResponse to each subscriber's Transition.
- ``fan-out``: ``--fanout-subscribers`` sessions on one query; inserts one at a
  time, each after the previous reached every session; fan-out is the time
  from the MutationResponse to the last session receiving it.

Memory per session is each server process's resident-memory growth while the
sessions opened, divided by their number (sessions with one subscription,
otherwise idle). Goals: p99 <= 30 ms at 1,000 sessions on the cluster,
10,000-session fan-out <= 1 s, <= 20 KiB per idle session.

Run: ``python bench/read_path.py [--subscribers 1000] [--queries 100] [--rate 200]
[--seconds 10] [--fanout-subscribers 10000] [--fanout-seconds 3] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from _common import (
    format_table,
    free_port,
    local_cluster,
    log,
    machine_description,
    run_server,
    service_pids,
    syncline_argv,
    write_json,
)
from update_latency import measure_updates, raise_open_file_limit

LATENCY_GOAL_P99_MS = 30.0
FANOUT_GOAL_MS = 1000.0
SESSION_GOAL_KIB = 20.0


@contextlib.asynccontextmanager
async def embedded() -> AsyncIterator[tuple[str, dict[str, int]]]:
    port = free_port()
    async with run_server("syncline", syncline_argv(port), port) as server:
        yield server.url, {"server": server.pid}


@contextlib.asynccontextmanager
async def cluster() -> AsyncIterator[tuple[str, dict[str, int]]]:
    async with local_cluster("read-path") as local:
        yield local.gateway_url, service_pids(local)


TARGETS = {"embedded": embedded, "cluster": cluster}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    raise_open_file_limit(2 * max(args.subscribers, args.fanout_subscribers) + 1024)
    runs: list[dict[str, Any]] = []
    for target, servers in TARGETS.items():
        async with servers() as (url, pids):
            log(f"{target}: updates")
            updates = await measure_updates(
                url, pids, args.subscribers, args.queries, args.rate, args.seconds
            )
            runs.append({"target": target, "phase": "updates", **updates})
            log(f"{target}: fan-out")
            fan_out = await measure_updates(
                url, pids, args.fanout_subscribers, 1, 0.0, args.fanout_seconds
            )
            runs.append({"target": target, "phase": "fan-out", **fan_out})
    return {"benchmark": "read_path", "machine": machine_description(), "runs": runs}


def table(results: dict[str, Any]) -> str:
    headers = [
        "target",
        "phase",
        "sessions",
        "queries",
        "mutations",
        "delivered",
        "ack->recv p50 ms",
        "p99 ms",
        "fan-out p50 ms",
        "fan-out max ms",
        "KiB/session",
    ]
    rows = []
    for r in results["runs"]:
        memory = ", ".join(f"{name} {kib:.1f}" for name, kib in r["session_kib"].items())
        rows.append(
            [
                r["target"],
                r["phase"],
                r["subscribers"],
                r["queries"],
                r["mutations_acked"],
                f"{r['deliveries']}/{r['deliveries_expected']}",
                r["ack_to_receive"]["p50_ms"],
                r["ack_to_receive"]["p99_ms"],
                r["fan_out"]["p50_ms"],
                r["fan_out"]["max_ms"],
                memory,
            ]
        )
    return format_table(headers, rows)


def check_goals(results: dict[str, Any]) -> list[str]:
    lines = []
    for r in results["runs"]:
        if r["target"] != "cluster":
            continue
        if r["phase"] == "updates":
            p99 = r["ack_to_receive"]["p99_ms"]
            met = p99 <= LATENCY_GOAL_P99_MS
            lines.append(
                f"{'met' if met else 'MISSED'}: update p99 {p99:.1f} ms at {r['subscribers']} "
                f"sessions (goal <= {LATENCY_GOAL_P99_MS:g} ms)"
            )
            worst = max(r["session_kib"].values())
            met = worst <= SESSION_GOAL_KIB
            lines.append(
                f"{'met' if met else 'MISSED'}: {worst:.1f} KiB per session in the worst "
                f"process (goal <= {SESSION_GOAL_KIB:g} KiB)"
            )
        else:
            fan_out = r["fan_out"]["max_ms"]
            met = fan_out <= FANOUT_GOAL_MS
            lines.append(
                f"{'met' if met else 'MISSED'}: fan-out to {r['subscribers']} sessions "
                f"{fan_out:.0f} ms at worst (goal <= {FANOUT_GOAL_MS:g} ms)"
            )
    return lines


def print_report(results: dict[str, Any]) -> None:
    print("Read path: embedded mode and a local cluster, measured alike in one run")
    print(table(results))
    for r in results["runs"]:
        for error in r["errors"]:
            print(f"  {r['target']}/{r['phase']} error: {error}")
    print()
    for line in check_goals(results):
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--rate", type=float, default=200.0, help="inserts per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fanout-subscribers", type=int, default=10_000)
    parser.add_argument("--fanout-seconds", type=float, default=3.0)
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    args = parser.parse_args()
    if args.subscribers < args.queries:
        parser.error("--subscribers must be at least --queries")
    results = asyncio.run(run(args))
    print_report(results)
    write_json(args.json, results)


if __name__ == "__main__":
    main()
