"""Update latency: how soon subscribers see a committed change.

Starts Syncline, opens ``--subscribers`` WebSocket sessions of the sync
protocol, each subscribed to ``counter:by_key`` for one of ``--queries``
distinct keys (k0, k1, ...; session i watches key i mod queries), and waits
until every session has its initial result. A separate driver session then
inserts into random keys, paced at ``--rate`` mutations per second for
``--seconds`` (``--rate 0``: one at a time, each after the previous one was
delivered everywhere). ``by_key`` returns the newest five documents of a key,
so each insert's id appears in the value of every subscriber of that key;
the time a subscriber's reader sees that id is its delivery time.

Reported per delivery (one mutation x one subscriber of its key):

- ack -> receive: from the driver receiving the ``MutationResponse`` (the
  write is durable) to the subscriber receiving the ``Transition``; this can
  be slightly negative when the subscriber's frame is read first;
- send -> receive: from the driver sending the mutation (covers execution,
  commit and fsync too);
- and per mutation, send -> ack.

All clients live in this one asyncio process; the server is a separate
process. As a transport baseline it also times round trips through a tiny
aiohttp WebSocket echo server (bench/echo_server.py) on the same machine.

Run: ``python bench/update_latency.py [--subscribers 1000] [--queries 100]
[--rate 50] [--seconds 10] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from _common import (
    BENCH_DIR,
    CpuMeter,
    format_table,
    free_port,
    log,
    machine_description,
    run_server,
    summarize_ms,
    syncline_argv,
    write_json,
)

CONNECT_PARALLELISM = 50
INITIAL_RESULTS_TIMEOUT_SECONDS = 120.0
SETTLE_TIMEOUT_SECONDS = 10.0
DELIVERY_TIMEOUT_SECONDS = 5.0
ECHO_ROUND_TRIPS = 2000


def raise_open_file_limit(needed: int) -> None:
    """One socket per session here, and as many in the server (which inherits this)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        log(f"raised the open-file limit from {soft} to {want}")
    if hard != resource.RLIM_INFINITY and hard < needed:
        log(f"warning: the hard open-file limit {hard} is below the {needed} needed")


def connect_frame() -> str:
    import uuid

    return json.dumps(
        {
            "type": "Connect",
            "sessionId": str(uuid.uuid4()),
            "connectionCount": 0,
            "lastCloseReason": None,
            "clientTs": int(time.time() * 1000),
        }
    )


@dataclass
class Mutation:
    key: str
    sent: float
    acked: float | None = None
    doc_id: str | None = None


@dataclass
class Recorder:
    """Every delivery and mutation the clients observe, by document id."""

    deliveries: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    mutations: dict[int, Mutation] = field(default_factory=dict)
    by_doc: dict[str, Mutation] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    delivered: asyncio.Condition = field(default_factory=asyncio.Condition)

    def error(self, what: str) -> None:
        if len(self.errors) < 20:
            self.errors.append(what)


@dataclass
class Subscriber:
    """One sync session watching ``counter:by_key`` for one key."""

    index: int
    key: str
    ws: Any
    initial: asyncio.Event = field(default_factory=asyncio.Event)
    seen: set[str] = field(default_factory=set)

    async def read(self, recorder: Recorder) -> None:
        async for message in self.ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            received = time.perf_counter()
            frame = json.loads(message.data)
            kind = frame.get("type")
            if kind == "Transition":
                for mod in frame["modifications"]:
                    if mod["type"] == "QueryUpdated":
                        ids = {doc["_id"] for doc in mod["value"]}
                        fresh = ids - self.seen
                        if self.initial.is_set():
                            for doc_id in fresh:
                                recorder.deliveries[doc_id].append(received)
                        self.seen |= fresh
                        self.initial.set()
                    elif mod["type"] == "QueryFailed":
                        recorder.error(f"session {self.index}: {mod.get('errorMessage')}")
                        self.initial.set()
                if self.initial.is_set():
                    async with recorder.delivered:
                        recorder.delivered.notify_all()
            elif kind == "FatalError":
                recorder.error(f"session {self.index}: FatalError {frame.get('error')}")
                break
        if not self.initial.is_set():
            recorder.error(f"session {self.index}: closed before its initial result")
            self.initial.set()


async def open_subscriber(
    http: aiohttp.ClientSession, ws_url: str, index: int, key: str, limit: asyncio.Semaphore
) -> Subscriber:
    async with limit:
        ws = await http.ws_connect(ws_url, max_msg_size=0)
        await ws.send_str(connect_frame())
        await ws.send_str(
            json.dumps(
                {
                    "type": "ModifyQuerySet",
                    "baseVersion": 0,
                    "newVersion": 1,
                    "modifications": [
                        {
                            "type": "Add",
                            "queryId": 0,
                            "udfPath": "counter:by_key",
                            "args": [{"key": key}],
                        }
                    ],
                }
            )
        )
    return Subscriber(index, key, ws)


class Driver:
    """The session that issues mutations and times their MutationResponses."""

    def __init__(self, ws: Any, recorder: Recorder) -> None:
        self._ws = ws
        self._recorder = recorder
        self._next_id = 0
        self._acks: dict[int, asyncio.Future[None]] = {}

    async def read(self) -> None:
        async for message in self._ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            received = time.perf_counter()
            frame = json.loads(message.data)
            if frame.get("type") != "MutationResponse":
                continue
            mutation = self._recorder.mutations[frame["requestId"]]
            if frame.get("success"):
                mutation.acked = received
                mutation.doc_id = frame["result"]
                self._recorder.by_doc[mutation.doc_id] = mutation
            else:
                self._recorder.error(f"mutation failed: {frame.get('result')}")
            ack = self._acks.pop(frame["requestId"], None)
            if ack is not None and not ack.done():
                ack.set_result(None)

    async def insert(self, key: str) -> asyncio.Future[None]:
        """Send one insert; the future resolves on its MutationResponse."""
        self._next_id += 1
        request_id = self._next_id
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks[request_id] = ack
        frame = json.dumps(
            {
                "type": "Mutation",
                "requestId": request_id,
                "udfPath": "counter:insert",
                "args": [{"key": key}],
            }
        )
        self._recorder.mutations[request_id] = Mutation(key, time.perf_counter())
        await self._ws.send_str(frame)
        return ack


async def wait_delivered(
    recorder: Recorder, expected: dict[str, int], doc_ids: list[str], timeout_seconds: float
) -> bool:
    """Wait until each document id was delivered to every subscriber of its key."""

    def complete() -> bool:
        return all(
            len(recorder.deliveries.get(d, ())) >= expected[recorder.by_doc[d].key] for d in doc_ids
        )

    try:
        async with recorder.delivered:
            await asyncio.wait_for(recorder.delivered.wait_for(complete), timeout_seconds)
    except TimeoutError:
        return False
    return True


async def drive(
    driver: Driver,
    recorder: Recorder,
    keys: list[str],
    expected: dict[str, int],
    *,
    rate: float,
    seconds: float,
) -> int:
    """Issue mutations for ``seconds``; returns how many were sent."""
    rng = random.Random(1)
    start = time.perf_counter()
    deadline = start + seconds
    pending: list[asyncio.Future[None]] = []
    sent = 0
    while time.perf_counter() < deadline:
        key = rng.choice(keys)
        if rate > 0:
            pending.append(await driver.insert(key))
            sent += 1
            delay = start + sent / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        else:
            await (await driver.insert(key))
            sent += 1
            mutation = recorder.mutations[sent]
            if mutation.doc_id is not None:
                await wait_delivered(
                    recorder, expected, [mutation.doc_id], DELIVERY_TIMEOUT_SECONDS
                )
    if pending:
        await asyncio.wait(pending, timeout=SETTLE_TIMEOUT_SECONDS)
    return sent


async def measure_syncline(
    subscribers: int, queries: int, rate: float, seconds: float
) -> dict[str, Any]:
    """The embedded server (``syncline dev`` on bench/app) as a child process."""
    port = free_port()
    async with run_server("syncline", syncline_argv(port), port) as server:
        return await measure_updates(
            server.url, {"server": server.pid}, subscribers, queries, rate, seconds
        )


def rss_bytes(pid: int) -> int:
    """Resident memory of one process (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def measure_updates(
    url: str,
    pids: dict[str, int],
    subscribers: int,
    queries: int,
    rate: float,
    seconds: float,
    *,
    writer_url: str | None = None,
) -> dict[str, Any]:
    """Sessions on ``url`` (a Syncline server or gateway), then paced mutations.

    ``writer_url``: where the mutations are sent from (default ``url``; another
    region's gateway measures cross-region updates).

    ``pids`` name the server processes whose CPU and memory are reported (memory
    per session: their resident memory growth while the sessions opened, divided
    by the number of sessions).
    """
    recorder = Recorder()
    keys = [f"k{i}" for i in range(queries)]
    expected: dict[str, int] = defaultdict(int)
    for i in range(subscribers):
        expected[keys[i % queries]] += 1
    ws_url = url.replace("http://", "ws://") + "/api/sync"
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        rss_before = {name: rss_bytes(pid) for name, pid in pids.items()}
        log(f"opening {subscribers} sessions over {queries} queries")
        opened = time.perf_counter()
        limit = asyncio.Semaphore(CONNECT_PARALLELISM)
        subs = await asyncio.gather(
            *(
                open_subscriber(http, ws_url, i, keys[i % queries], limit)
                for i in range(subscribers)
            )
        )
        readers = [
            asyncio.create_task(s.read(recorder), name=f"subscriber-{s.index}") for s in subs
        ]
        await asyncio.wait_for(
            asyncio.gather(*(s.initial.wait() for s in subs)), INITIAL_RESULTS_TIMEOUT_SECONDS
        )
        subscribe_seconds = time.perf_counter() - opened
        log(f"all {subscribers} initial results in {subscribe_seconds:.2f} s")
        await asyncio.sleep(1.0)  # let the servers settle before reading their memory
        session_kib = {
            name: (rss_bytes(pid) - rss_before[name]) / subscribers / 1024
            for name, pid in pids.items()
        }

        writer_ws_url = (writer_url or url).replace("http://", "ws://") + "/api/sync"
        driver_ws = await http.ws_connect(writer_ws_url, max_msg_size=0)
        await driver_ws.send_str(connect_frame())
        driver = Driver(driver_ws, recorder)
        driver_reader = asyncio.create_task(driver.read(), name="driver")
        mode = f"{rate:g}/s" if rate > 0 else "one at a time"
        log(f"driving mutations ({mode}) for {seconds:g} s")
        meter = CpuMeter(pids)
        sent = await drive(driver, recorder, keys, expected, rate=rate, seconds=seconds)
        cpu = meter.stop()
        acked = list(recorder.by_doc)
        log(f"{sent} mutations sent, {len(acked)} acknowledged; waiting for deliveries")
        settled = await wait_delivered(recorder, expected, acked, SETTLE_TIMEOUT_SECONDS)
        if not settled:
            log("some deliveries did not arrive in time")

        await asyncio.gather(
            driver_ws.close(), *(s.ws.close() for s in subs), return_exceptions=True
        )
        for task in [*readers, driver_reader]:
            task.cancel()
        await asyncio.gather(*readers, driver_reader, return_exceptions=True)

    ack_to_receive: list[float] = []
    send_to_receive: list[float] = []
    send_to_ack: list[float] = []
    fan_out: list[float] = []
    expected_deliveries = 0
    for doc_id, mutation in recorder.by_doc.items():
        assert mutation.acked is not None
        send_to_ack.append(mutation.acked - mutation.sent)
        expected_deliveries += expected[mutation.key]
        received_all = recorder.deliveries.get(doc_id, [])
        for received in received_all:
            ack_to_receive.append(received - mutation.acked)
            send_to_receive.append(received - mutation.sent)
        if received_all and len(received_all) >= expected[mutation.key]:
            fan_out.append(max(received_all) - mutation.acked)
    return {
        "subscribers": subscribers,
        "queries": queries,
        "rate_per_s": rate,
        "seconds": seconds,
        "subscribe_seconds": round(subscribe_seconds, 3),
        "mutations_sent": sent,
        "mutations_acked": len(recorder.by_doc),
        "deliveries": len(ack_to_receive),
        "deliveries_expected": expected_deliveries,
        "ack_to_receive": summarize_ms(ack_to_receive),
        "send_to_receive": summarize_ms(send_to_receive),
        "send_to_ack": summarize_ms(send_to_ack),
        "fan_out": summarize_ms(fan_out),
        "min_ack_to_receive_ms": min(ack_to_receive, default=float("nan")) * 1000,
        "session_kib": session_kib,
        "errors": recorder.errors,
        **cpu,
    }


async def measure_echo(round_trips: int) -> dict[str, Any]:
    """Sequential round trips of a Transition-sized text frame through the echo server."""
    port = free_port()
    argv = [sys.executable, str(BENCH_DIR / "echo_server.py"), "--port", str(port)]
    payload = json.dumps(
        {
            "type": "Transition",
            "modifications": [
                {"type": "QueryUpdated", "queryId": 0, "value": [{"_id": "x" * 32, "n": 1.0}] * 5}
            ],
        }
    )
    async with run_server("echo", argv, port) as server, aiohttp.ClientSession() as http:
        ws = await http.ws_connect(server.url.replace("http://", "ws://") + "/echo")
        try:
            for _ in range(100):  # warm up
                await ws.send_str(payload)
                await ws.receive()
            log(f"echo: timing {round_trips} round trips of {len(payload)} bytes")
            times: list[float] = []
            for _ in range(round_trips):
                sent = time.perf_counter()
                await ws.send_str(payload)
                message = await ws.receive()
                json.loads(message.data)
                times.append(time.perf_counter() - sent)
        finally:
            await ws.close()
    return {"round_trips": round_trips, "frame_bytes": len(payload), **summarize_ms(times)}


async def run(subscribers: int, queries: int, rate: float, seconds: float) -> dict[str, Any]:
    raise_open_file_limit(subscribers + 1024)
    syncline = await measure_syncline(subscribers, queries, rate, seconds)
    echo = await measure_echo(ECHO_ROUND_TRIPS)
    return {
        "benchmark": "update_latency",
        "machine": machine_description(),
        "syncline": syncline,
        "echo_baseline": echo,
    }


def table(results: dict[str, Any]) -> str:
    s = results["syncline"]
    e = results["echo_baseline"]
    headers = [
        "measure",
        "subscribers",
        "queries",
        "mutations",
        "deliveries",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
    ]
    common = [s["subscribers"], s["queries"], s["mutations_acked"]]
    delivered = f"{s['deliveries']}/{s['deliveries_expected']}"

    def stats(d: dict[str, float]) -> list[float]:
        return [d["p50_ms"], d["p90_ms"], d["p99_ms"], d["max_ms"]]

    rows = [
        ["ack -> receive", *common, delivered, *stats(s["ack_to_receive"])],
        ["send -> receive", *common, delivered, *stats(s["send_to_receive"])],
        ["send -> ack", *common, "-", *stats(s["send_to_ack"])],
        ["echo round trip", 1, "-", e["round_trips"], "-", *stats(e)],
    ]
    return format_table(headers, rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--subscribers", type=int, default=1000, help="WebSocket sessions")
    parser.add_argument("--queries", type=int, default=100, help="distinct queries (keys)")
    parser.add_argument(
        "--rate", type=float, default=50.0, help="mutations per second (0: one at a time)"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to drive")
    parser.add_argument("--json", metavar="FILE", help="also write the results here")


def print_report(results: dict[str, Any]) -> None:
    s = results["syncline"]
    rate = f"{s['rate_per_s']:g} mutations/s" if s["rate_per_s"] > 0 else "one at a time"
    print(
        f"Update latency ({rate} for {s['seconds']:g} s; subscribing took "
        f"{s['subscribe_seconds']:.2f} s; cpu while driving: server "
        f"{s['server_cpu_pct']:.0f}%, client {s['client_cpu_pct']:.0f}%, "
        f"other {s['other_cpu_pct']:.0f}%)"
    )
    print(table(results))
    for error in s["errors"]:
        print(f"  error: {error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args()
    if args.subscribers < args.queries:
        parser.error("--subscribers must be at least --queries")
    results = asyncio.run(run(args.subscribers, args.queries, args.rate, args.seconds))
    print_report(results)
    write_json(args.json, results)


if __name__ == "__main__":
    main()
