"""Run every Syncline benchmark and print their tables.

Runs bench/throughput.py, bench/update_latency.py and bench/txn_commit.py in
turn (each starts and stops its own servers), then prints their result tables
and checks them against the goals:

- write throughput over HTTP and WebSocket >= 1x the plain endpoint;
- update latency (ack -> receive) p99 <= 25 ms;
- cluster commits through the txn service >= 0.5x raw PostgreSQL, p99 <= 20 ms.

Run: ``python bench/run_all.py [--quick] [--json-dir DIR]``; ``--quick``
shortens every timed phase (under a minute in all instead of about a minute
and a half). Exits 1 if a goal is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import throughput
import txn_commit
import update_latency
from _common import log, write_json

THROUGHPUT_GOAL_RATIO = 1.0
LATENCY_GOAL_P99_MS = 25.0


def check_goals(tp: dict[str, Any], ul: dict[str, Any]) -> list[str]:
    """One line per goal: met or missed."""
    lines = []
    for run in tp["runs"]:
        if run["target"].startswith("syncline"):
            ratio = run["ratio_to_plain"] or 0.0
            verdict = "met" if ratio >= THROUGHPUT_GOAL_RATIO else "MISSED"
            lines.append(
                f"{verdict}: {run['target']} throughput {ratio:.2f}x plain "
                f"(goal >= {THROUGHPUT_GOAL_RATIO:g}x)"
            )
    p99 = ul["syncline"]["ack_to_receive"]["p99_ms"]
    complete = ul["syncline"]["deliveries"] == ul["syncline"]["deliveries_expected"]
    verdict = "met" if p99 <= LATENCY_GOAL_P99_MS and complete else "MISSED"
    lines.append(
        f"{verdict}: update latency p99 {p99:.1f} ms (goal <= {LATENCY_GOAL_P99_MS:g} ms), "
        f"{ul['syncline']['deliveries']}/{ul['syncline']['deliveries_expected']} delivered"
    )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter timed phases")
    parser.add_argument(
        "--json-dir", type=Path, help="write throughput.json, update_latency.json, txn_commit.json"
    )
    args = parser.parse_args()
    seconds = 4.0 if args.quick else 10.0
    warmup = 1.0 if args.quick else 2.0

    log("throughput benchmark")
    tp = asyncio.run(throughput.run(seconds, 64, warmup))
    log("update latency benchmark")
    ul = asyncio.run(update_latency.run(1000, 100, 50.0, seconds))
    log("txn commit benchmark")
    tc = asyncio.run(txn_commit.run(seconds, 64, warmup))

    throughput.print_report(tp)
    print()
    update_latency.print_report(ul)
    print()
    txn_commit.print_report(tc)
    print()
    goals = check_goals(tp, ul) + tc["goals"]
    print("\n".join(goals))
    if args.json_dir:
        args.json_dir.mkdir(parents=True, exist_ok=True)
        write_json(str(args.json_dir / "throughput.json"), tp)
        write_json(str(args.json_dir / "update_latency.json"), ul)
        write_json(str(args.json_dir / "txn_commit.json"), tc)
    return 0 if all(line.startswith("met") for line in goals) else 1


if __name__ == "__main__":
    sys.exit(main())
