"""Regions: replication lag, and cross-region update latency with and without delay.

One ``syncline cluster up --regions us-east,eu-west,ap-southeast`` on bench/app
(every link between regions through its own fault proxy). For each injected
one-way delay (``--delays``, default 0 and 50 ms, set on every link of every
non-primary region), and each non-primary region:

- ``--subscribers`` sessions on that region's gateway over ``--queries``
  queries, while a writer on the primary region's gateway inserts at ``--rate``
  per second for ``--seconds``: latency runs from the writer's MutationResponse
  to each subscriber's Transition (as in bench/update_latency.py);
- meanwhile the primary's ``pg_stat_replication.replay_lag`` for the region's
  replica is sampled every 100 ms: the replication lag.

The baseline printed beside each row is the injected delay itself. Goal:
cross-region p99 <= injected delay + 30 ms.

Run: ``python bench/regions.py [--delays 0,50] [--subscribers 200] [--queries 20]
[--rate 200] [--seconds 10] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
from collections.abc import AsyncIterator
from typing import Any

from _common import format_table, local_cluster, log, machine_description, write_json
from update_latency import measure_updates, raise_open_file_limit

from syncline.cluster._local_cluster import DATABASE, LocalCluster

REGIONS = ["us-east", "eu-west", "ap-southeast"]
GOAL_MARGIN_MS = 30.0


@contextlib.asynccontextmanager
async def regional_cluster() -> AsyncIterator[LocalCluster]:
    async with local_cluster("regions", regions=REGIONS) as local:
        yield local


async def sample_lag(local: LocalCluster, region: str, into: list[float]) -> None:
    primary = local.postgres.dsn(DATABASE)
    replica = local.regions[region]
    while True:
        status = await replica.status(primary)
        if status.replay_lag_ms is not None:
            into.append(status.replay_lag_ms)
        await asyncio.sleep(0.1)


def quantiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return (values[0], values[0]) if values else (float("nan"), float("nan"))
    cuts = statistics.quantiles(values, n=100)
    return cuts[49], cuts[98]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    raise_open_file_limit(2 * args.subscribers + 1024)
    runs: list[dict[str, Any]] = []
    async with regional_cluster() as local:
        urls = local.gateway_urls
        pids = {s.spec.name: s.pid for s in local.services if s.pid is not None}
        writer = urls[REGIONS[0]]
        for delay in args.delays:
            for region in REGIONS[1:]:
                await local.set_faults(region, delay_ms=delay)
            for region in REGIONS[1:]:
                log(f"{region}: writes from {REGIONS[0]}, {delay:g} ms injected each way")
                lags: list[float] = []
                sampler = asyncio.create_task(sample_lag(local, region, lags))
                try:
                    updates = await measure_updates(
                        urls[region],
                        {k: v for k, v in pids.items() if region in k},
                        args.subscribers,
                        args.queries,
                        args.rate,
                        args.seconds,
                        writer_url=writer,
                    )
                finally:
                    sampler.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await sampler
                lag_p50, lag_p99 = quantiles(lags)
                runs.append(
                    {
                        "region": region,
                        "injected_ms": delay,
                        "lag_p50_ms": lag_p50,
                        "lag_p99_ms": lag_p99,
                        "lag_samples": len(lags),
                        **updates,
                    }
                )
    return {"benchmark": "regions", "machine": machine_description(), "runs": runs}


def table(results: dict[str, Any]) -> str:
    headers = [
        "region",
        "injected ms",
        "lag p50 ms",
        "lag p99 ms",
        "delivered",
        "cross-region p50 ms",
        "p99 ms",
        "max ms",
        "goal p99 ms",
    ]
    rows = []
    for r in results["runs"]:
        latency = r["ack_to_receive"]
        rows.append(
            [
                r["region"],
                r["injected_ms"],
                r["lag_p50_ms"],
                r["lag_p99_ms"],
                f"{r['deliveries']}/{r['deliveries_expected']}",
                latency["p50_ms"],
                latency["p99_ms"],
                latency["max_ms"],
                r["injected_ms"] + GOAL_MARGIN_MS,
            ]
        )
    return format_table(headers, rows)


def check_goals(results: dict[str, Any]) -> list[str]:
    lines = []
    for r in results["runs"]:
        p99 = r["ack_to_receive"]["p99_ms"]
        goal = r["injected_ms"] + GOAL_MARGIN_MS
        verdict = "met" if p99 <= goal else "MISSED"
        lines.append(
            f"{verdict}: {r['region']} cross-region p99 {p99:.1f} ms with "
            f"{r['injected_ms']:g} ms injected (goal <= {goal:g} ms)"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delays", default="0,50", help="one-way delays to inject, in ms")
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--rate", type=float, default=200.0, help="inserts per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    args = parser.parse_args()
    args.delays = [float(d) for d in args.delays.split(",")]
    results = asyncio.run(run(args))
    print("Regions: writes in us-east, subscribers in each other region")
    print(table(results))
    for line in check_goals(results):
        print(line)
    write_json(args.json, results)


if __name__ == "__main__":
    main()
