"""Presence: members of one room each moving their cursor several times a second.

Targets, measured alike in one run, each serving bench/app:

- ``cluster/presence``: ``ctx.presence`` on a local cluster (``syncline cluster``'s
  processes: 2 sync nodes behind 1 gateway, the region's Redis);
- ``cluster/database``: the same traffic as database mutations on that cluster,
  one cursor document per member patched per move, and a query of the room's
  cursors: what presence saves;
- ``embedded/presence``: ``syncline dev``, rooms in its memory.

Every member is a WebSocket session of the Convex sync protocol opened from this
process. It subscribes to the room's members query and sends its cursor
``--rate`` times a second, all members spread evenly over the period; a member
with 4 of its own moves unanswered skips a tick (a real client sends its newest
position, not a backlog). ``--observers`` of the sessions decode everything they
receive: latency runs from a move being sent to each observer first seeing that
move or a newer one of the same member. The other sessions read their frames
without decoding them.

Reported per target: moves sent and applied per second, latency p50/p99/max,
how many (move, observer) pairs arrived, Redis commands and round trips per
applied move (``INFO commandstats``), database commits per applied move, and
CPU. Goal: p99 <= 50 ms at 1,000 members x 10 moves/s on the local cluster.

Run: ``python bench/presence.py [--members 1000] [--rate 10] [--seconds 10]
[--observers 20] [--targets cluster,embedded] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from _common import (
    CpuMeter,
    format_table,
    free_port,
    local_cluster,
    log,
    machine_description,
    run_server,
    service_pids,
    summarize_ms,
    syncline_argv,
    write_json,
)
from update_latency import connect_frame, raise_open_file_limit

ROOM = "bench"
MAX_UNANSWERED = 4
WARMUP_SECONDS = 2.0
DRAIN_SECONDS = 3.0
READY_TIMEOUT_SECONDS = 120.0
GOAL_P99_MS = 50.0

#: (members query, move mutation, whether the mutation names the member)
WORKLOADS = {
    "presence": ("presence:members", "presence:move", False),
    "database": ("presence:members_stored", "presence:move_stored", True),
}


@dataclass
class Run:
    """What one workload's sessions saw."""

    sent_at: dict[tuple[int, int], float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    measure_from: float = float("inf")
    measure_until: float = float("inf")
    sent: int = 0
    skipped: int = 0
    applied: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def error(self, what: str) -> None:
        if len(self.errors) < 10:
            self.errors.append(what)


class MemberSession:
    """One member: a sync session subscribed to the room, sending its cursor."""

    def __init__(self, index: int, ws: Any, run: Run, observer: bool) -> None:
        self.index = index
        self.ws = ws
        self.observer = observer
        self.ready = asyncio.Event()
        self._run = run
        self._seq = 0
        self._request_id = 0
        self._unanswered = 0
        self._last_seen: dict[int, int] = {}

    def move(self, mutation: str, names_member: bool) -> None:
        if self._unanswered >= MAX_UNANSWERED:
            self._run.skipped += 1
            return
        self._seq += 1
        args: dict[str, Any] = {"room": ROOM, "state": {"m": self.index, "s": self._seq}}
        if names_member:
            args["member"] = str(self.index)
        frame = json.dumps(
            {
                "type": "Mutation",
                "requestId": self._request_id,
                "udfPath": mutation,
                "args": [args],
            }
        )
        self._request_id += 1
        self._unanswered += 1
        self._run.sent_at[(self.index, self._seq)] = time.perf_counter()
        self._run.sent += 1
        task = asyncio.ensure_future(self.ws.send_str(frame))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def read(self) -> None:
        run = self._run
        async for message in self.ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            data: str = message.data
            if data.startswith('{"type":"MutationResponse"'):
                self._unanswered -= 1
                response = json.loads(data)
                if response.get("success"):
                    run.applied += 1
                else:
                    run.failed += 1
                    run.error(f"member {self.index}: {response.get('result')}")
                continue
            if not data.startswith('{"type":"Transition"'):
                if data.startswith('{"type":"FatalError"'):
                    run.error(f"member {self.index}: {data[:200]}")
                continue
            if not self.observer:
                if not self.ready.is_set() and "QueryUpdated" in data:
                    self.ready.set()
                continue
            received = time.perf_counter()
            for modification in json.loads(data)["modifications"]:
                if modification.get("type") == "QueryFailed":
                    run.error(f"observer {self.index}: {modification.get('errorMessage')}")
                if modification.get("type") != "QueryUpdated":
                    continue
                self.ready.set()
                self._observe(modification["value"], received)

    def _observe(self, members: list[dict[str, Any]], received: float) -> None:
        run = self._run
        for entry in members:
            state = entry["state"]
            member, seq = int(state["m"]), int(state["s"])
            last = self._last_seen.get(member, 0)
            if seq <= last:
                continue
            self._last_seen[member] = seq
            for earlier in range(last + 1, seq + 1):
                sent = run.sent_at.get((member, earlier))
                if sent is not None and run.measure_from <= sent < run.measure_until:
                    run.latencies.append(received - sent)


async def open_member(
    http: aiohttp.ClientSession,
    ws_url: str,
    index: int,
    run: Run,
    query: str,
    observer: bool,
    limit: asyncio.Semaphore,
) -> MemberSession:
    async with limit:
        ws = await http.ws_connect(ws_url, max_msg_size=0)
        await ws.send_str(connect_frame())
        add = {"type": "Add", "queryId": 0, "udfPath": query, "args": [{"room": ROOM}]}
        await ws.send_str(
            json.dumps(
                {
                    "type": "ModifyQuerySet",
                    "baseVersion": 0,
                    "newVersion": 1,
                    "modifications": [add],
                }
            )
        )
    return MemberSession(index, ws, run, observer)


async def redis_counts(url: str | None) -> tuple[int, int]:
    """(all commands, script calls) Redis has run so far; (0, 0) without Redis."""
    if url is None:
        return 0, 0
    client = aioredis.Redis.from_url(url)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    calls = {name.removeprefix("cmdstat_"): int(s["calls"]) for name, s in stats.items()}
    scripts = sum(n for name, n in calls.items() if name in ("evalsha", "eval"))
    return sum(calls.values()), scripts


async def measure(
    url: str,
    pids: dict[str, int],
    redis_url: str | None,
    workload: str,
    members: int,
    rate: float,
    seconds: float,
    observers: int,
) -> dict[str, Any]:
    query, mutation, names_member = WORKLOADS[workload]
    run = Run()
    ws_url = url.replace("http://", "ws://") + "/api/sync"
    loop = asyncio.get_running_loop()
    # One connection per session: no pool limit.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        limit = asyncio.Semaphore(50)
        sessions = await asyncio.gather(
            *(
                open_member(http, ws_url, i, run, query, i < observers, limit)
                for i in range(members)
            )
        )
        readers = [asyncio.ensure_future(s.read()) for s in sessions]
        try:
            async with asyncio.timeout(READY_TIMEOUT_SECONDS):
                await asyncio.gather(*(s.ready.wait() for s in sessions))
            log(f"{workload}: {members} members subscribed; moving for {seconds:g} s")
            stop = loop.time() + WARMUP_SECONDS + seconds
            run.measure_from = time.perf_counter() + WARMUP_SECONDS
            run.measure_until = run.measure_from + seconds
            commands_before = scripts_before = 0
            meter: CpuMeter | None = None
            start = loop.time()
            sends = 0
            while loop.time() < stop:
                if meter is None and time.perf_counter() >= run.measure_from:
                    meter = CpuMeter(pids, with_descendants=True)
                    commands_before, scripts_before = await redis_counts(redis_url)
                    applied_before = run.applied
                due = int((loop.time() - start) * rate * members)
                while sends < due:
                    sessions[sends % members].move(mutation, names_member)
                    sends += 1
                await asyncio.sleep(0.002)
            assert meter is not None
            cpu = meter.stop()
            applied = run.applied - applied_before
            commands_after, scripts_after = await redis_counts(redis_url)
            await asyncio.sleep(DRAIN_SECONDS)
        finally:
            for session in sessions:
                await session.ws.close()
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
    in_window = sum(1 for t in run.sent_at.values() if run.measure_from <= t < run.measure_until)
    expected = in_window * min(observers, members)
    return {
        "workload": workload,
        "members": members,
        "rate": rate,
        "seconds": seconds,
        "observers": min(observers, members),
        "sent_per_s": in_window / seconds,
        "applied_per_s": applied / seconds,
        "skipped": run.skipped,
        "failed": run.failed,
        "latency": summarize_ms(run.latencies),
        "observed": len(run.latencies),
        "observed_expected": expected,
        "redis_commands_per_move": (commands_after - commands_before) / max(applied, 1),
        "redis_round_trips_per_move": (scripts_after - scripts_before) / max(applied, 1),
        "db_commits_per_move": 1.0 if workload == "database" else 0.0,
        "cpu": cpu,
        "errors": run.errors,
    }


@contextlib.asynccontextmanager
async def cluster() -> AsyncIterator[tuple[str, dict[str, int], str | None]]:
    async with local_cluster("presence") as local:
        pids = service_pids(local)
        for server in (local.redis, local.postgres):
            if server.pid is not None:
                pids[server.name] = server.pid
        yield local.gateway_url, pids, local.redis.url


@contextlib.asynccontextmanager
async def embedded() -> AsyncIterator[tuple[str, dict[str, int], str | None]]:
    port = free_port()
    async with run_server("syncline", syncline_argv(port), port) as server:
        yield server.url, {"server": server.pid}, None


async def run(args: argparse.Namespace) -> dict[str, Any]:
    raise_open_file_limit(2 * args.members + 1024)
    runs: list[dict[str, Any]] = []
    plan = {"cluster": (cluster, ["presence", "database"]), "embedded": (embedded, ["presence"])}
    for target in args.targets:
        servers, workloads = plan[target]
        async with servers() as (url, pids, redis_url):
            for workload in workloads:
                result = await measure(
                    url,
                    pids,
                    redis_url,
                    workload,
                    args.members,
                    args.rate,
                    args.seconds,
                    args.observers,
                )
                runs.append({"target": f"{target}/{workload}", **result})
    return {"benchmark": "presence", "machine": machine_description(), "runs": runs}


def table(results: dict[str, Any]) -> str:
    headers = [
        "target",
        "members x rate",
        "sent/s",
        "applied/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "observed",
        "redis cmds/move",
        "redis calls/move",
        "db commits/move",
        "server CPU %",
        "bench CPU %",
    ]
    rows = []
    for r in results["runs"]:
        cpu = r["cpu"]
        server_cpu = sum(v for k, v in cpu.items() if k not in ("client_cpu_pct", "other_cpu_pct"))
        rows.append(
            [
                r["target"],
                f"{r['members']} x {r['rate']:g}/s",
                round(r["sent_per_s"]),
                round(r["applied_per_s"]),
                r["latency"]["p50_ms"],
                r["latency"]["p99_ms"],
                r["latency"]["max_ms"],
                f"{r['observed']}/{r['observed_expected']}",
                round(r["redis_commands_per_move"], 2),
                round(r["redis_round_trips_per_move"], 2),
                r["db_commits_per_move"],
                round(server_cpu),
                round(cpu["client_cpu_pct"]),
            ]
        )
    return format_table(headers, rows)


def print_report(results: dict[str, Any]) -> None:
    print("Presence: one room, every member moving its cursor; presence against stored cursors")
    print(table(results))
    for r in results["runs"]:
        for error in r["errors"][:3]:
            print(f"  {r['target']} error: {error}")
        if r["target"] == "cluster/presence":
            p99 = r["latency"]["p99_ms"]
            met = "met" if p99 <= GOAL_P99_MS else "MISSED"
            print(
                f"{met}: cluster presence p99 {p99:.1f} ms at {r['members']} members x "
                f"{r['rate']:g}/s (goal <= {GOAL_P99_MS:g} ms)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=10.0, help="moves per member per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--observers", type=int, default=20)
    parser.add_argument(
        "--targets",
        type=lambda text: [t for t in text.split(",") if t],
        default=["cluster", "embedded"],
        help="comma-separated: cluster, embedded",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    args = parser.parse_args()
    if not set(args.targets) <= {"cluster", "embedded"}:
        parser.error("--targets: choose from cluster, embedded")
    results = asyncio.run(run(args))
    print_report(results)
    write_json(args.json, results)


if __name__ == "__main__":
    main()
