"""Write throughput: Syncline's insert mutation against a plain aiohttp+SQLite endpoint.

Each target runs alone (its own process, a fresh data directory) so the two
never compete for the machine's cores. For each target the driver warms up,
then keeps ``--concurrency`` requests in flight for ``--seconds`` and counts
the acknowledged ones:

- ``plain/http``: ``POST /insert`` on bench/plain_endpoint.py (one durable
  INSERT per request);
- ``syncline/http``: ``POST /api/mutation`` calling ``counter:insert``;
- ``syncline/ws``: the same mutation over the sync protocol, one WebSocket
  session per concurrent client, each with one mutation in flight; a
  mutation counts when its ``MutationResponse`` arrives.

Every acknowledged write is durable in both systems (SQLite WAL,
``synchronous=FULL``). Results go to stdout as a table; progress to stderr.

Run: ``python bench/throughput.py [--seconds 10] [--concurrency 64] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from _common import (
    CpuMeter,
    free_port,
    log,
    machine_description,
    plain_argv,
    print_runs,
    run_server,
    summarize_ms,
    syncline_argv,
    write_json,
)

KEYS = 100
ERROR_BACKOFF_SECONDS = 0.01


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


Worker = Callable[[int, float, RunStats], Awaitable[None]]


async def timed_run(
    target: str, concurrency: int, seconds: float, worker: Worker, server_pid: int
) -> RunStats:
    """Run ``concurrency`` workers until ``seconds`` have passed.

    Requests still in flight at the deadline are awaited but not counted, so
    ok/s reflects only work acknowledged within the window. CPU use of the
    server and of this load generator is sampled over the window.
    """
    stats = RunStats(target, concurrency)
    start = time.perf_counter()
    deadline = start + seconds
    meter = CpuMeter(server_pid)
    await asyncio.gather(*(worker(i, deadline, stats) for i in range(concurrency)))
    stats.cpu = meter.stop()
    stats.seconds = seconds
    return stats


# -- HTTP --------------------------------------------------------------------


def http_worker(
    session: aiohttp.ClientSession, url: str, body_for: Callable[[str], dict[str, Any]]
) -> Worker:
    """A closed-loop client: post, wait for the answer, repeat until the deadline."""

    def success(status: int, answer: Any) -> bool:
        if status != 200 or not isinstance(answer, dict):
            return False
        # Syncline answers {"status": "success", ...}; the plain endpoint {"id": ...}.
        return answer.get("status", "success") == "success"

    async def worker(index: int, deadline: float, stats: RunStats) -> None:
        body = json.dumps(body_for(f"k{index % KEYS}"))
        headers = {"Content-Type": "application/json"}
        while True:
            sent = time.perf_counter()
            if sent >= deadline:
                return
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    answer = await response.json(content_type=None)
                    ok = success(response.status, answer)
            except (aiohttp.ClientError, ValueError, TimeoutError) as exc:
                stats.error(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(ERROR_BACKOFF_SECONDS)
                continue
            done = time.perf_counter()
            if not ok:
                stats.error(f"HTTP {response.status}: {str(answer)[:200]}")
            elif done <= deadline:
                stats.latencies.append(done - sent)

    return worker


async def bench_http(
    target: str,
    url: str,
    body_for: Callable[[str], dict[str, Any]],
    *,
    server_pid: int,
    concurrency: int,
    seconds: float,
    warmup_seconds: float,
) -> RunStats:
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        worker = http_worker(session, url, body_for)
        if warmup_seconds > 0:
            log(f"{target}: warming up for {warmup_seconds:g} s")
            await timed_run(target, concurrency, warmup_seconds, worker, server_pid)
        log(f"{target}: measuring {concurrency} clients for {seconds:g} s")
        return await timed_run(target, concurrency, seconds, worker, server_pid)


# -- WebSocket (sync protocol) -------------------------------------------------


async def open_sync_session(session: aiohttp.ClientSession, ws_url: str) -> Any:
    """Open a sync-protocol WebSocket and send Connect (as Convex's clients do)."""
    ws = await session.ws_connect(ws_url, max_msg_size=0, autoping=True)
    await ws.send_str(
        json.dumps(
            {
                "type": "Connect",
                "sessionId": str(uuid.uuid4()),
                "connectionCount": 0,
                "lastCloseReason": None,
                "clientTs": int(time.time() * 1000),
            }
        )
    )
    return ws


def ws_worker(sockets: list[Any], request_ids: list[int]) -> Worker:
    """One mutation in flight per session; ack = its MutationResponse."""

    async def worker(index: int, deadline: float, stats: RunStats) -> None:
        ws = sockets[index]
        key = f"k{index % KEYS}"
        while True:
            sent = time.perf_counter()
            if sent >= deadline:
                return
            request_ids[index] += 1
            request_id = request_ids[index]
            await ws.send_str(
                json.dumps(
                    {
                        "type": "Mutation",
                        "requestId": request_id,
                        "udfPath": "counter:insert",
                        "args": [{"key": key}],
                    }
                )
            )
            while True:
                message = await ws.receive()
                if message.type is not aiohttp.WSMsgType.TEXT:
                    raise RuntimeError(f"session {index}: connection ended ({message.type!r})")
                frame = json.loads(message.data)
                if frame.get("type") == "MutationResponse" and frame["requestId"] == request_id:
                    break
                if frame.get("type") == "FatalError":
                    raise RuntimeError(f"session {index}: {frame.get('error')}")
            done = time.perf_counter()
            if not frame.get("success"):
                stats.error(str(frame.get("result"))[:200])
            elif done <= deadline:
                stats.latencies.append(done - sent)

    return worker


async def bench_ws(
    target: str,
    base_url: str,
    *,
    server_pid: int,
    concurrency: int,
    seconds: float,
    warmup_seconds: float,
) -> RunStats:
    ws_url = base_url.replace("http://", "ws://") + "/api/sync"
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        sockets = await asyncio.gather(
            *(open_sync_session(session, ws_url) for _ in range(concurrency))
        )
        try:
            request_ids = [0] * concurrency
            worker = ws_worker(sockets, request_ids)
            if warmup_seconds > 0:
                log(f"{target}: warming up for {warmup_seconds:g} s")
                await timed_run(target, concurrency, warmup_seconds, worker, server_pid)
            log(f"{target}: measuring {concurrency} sessions for {seconds:g} s")
            return await timed_run(target, concurrency, seconds, worker, server_pid)
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


# -- the whole benchmark -------------------------------------------------------


async def run(seconds: float, concurrency: int, warmup_seconds: float) -> dict[str, Any]:
    """Benchmark every target, one at a time; return a JSON-able result."""
    runs: list[RunStats] = []
    port = free_port()
    async with run_server("plain", plain_argv(port), port) as plain:
        runs.append(
            await bench_http(
                "plain/http",
                f"{plain.url}/insert",
                lambda key: {"key": key},
                server_pid=plain.pid,
                concurrency=concurrency,
                seconds=seconds,
                warmup_seconds=warmup_seconds,
            )
        )
    port = free_port()
    async with run_server("syncline", syncline_argv(port), port) as syncline:
        runs.append(
            await bench_http(
                "syncline/http",
                f"{syncline.url}/api/mutation",
                lambda key: {"path": "counter:insert", "args": {"key": key}, "format": "json"},
                server_pid=syncline.pid,
                concurrency=concurrency,
                seconds=seconds,
                warmup_seconds=warmup_seconds,
            )
        )
        runs.append(
            await bench_ws(
                "syncline/ws",
                syncline.url,
                server_pid=syncline.pid,
                concurrency=concurrency,
                seconds=seconds,
                warmup_seconds=warmup_seconds,
            )
        )
    summaries = [r.summary() for r in runs]
    plain_rate = summaries[0]["ok_per_s"]
    for summary in summaries:
        summary["ratio_to_plain"] = summary["ok_per_s"] / plain_rate if plain_rate else None
    return {
        "benchmark": "throughput",
        "machine": machine_description(),
        "settings": {
            "seconds": seconds,
            "concurrency": concurrency,
            "warmup_seconds": warmup_seconds,
        },
        "runs": summaries,
    }


COLUMNS = [
    ("target", "target"),
    ("concurrency", "concurrency"),
    ("ok/s", "ok_per_s"),
    ("p50 ms", "p50_ms"),
    ("p99 ms", "p99_ms"),
    ("errors", "errors"),
    ("x plain", "ratio_to_plain"),
    ("server cpu %", "server_cpu_pct"),
    ("client cpu %", "client_cpu_pct"),
    ("other cpu %", "other_cpu_pct"),
]


def print_report(results: dict[str, Any]) -> None:
    s = results["settings"]
    print_runs(
        f"Write throughput (acknowledged durable inserts; {s['seconds']:g} s per target "
        f"after {s['warmup_seconds']:g} s warm-up)",
        results["runs"],
        COLUMNS,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per target")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    parser.add_argument("--json", metavar="FILE", help="also write the results here")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args()
    results = asyncio.run(run(args.seconds, args.concurrency, args.warmup))
    print_report(results)
    write_json(args.json, results)


if __name__ == "__main__":
    main()
