"""Helpers shared by the benchmark scripts: server subprocesses, statistics, tables.

Servers always run as separate processes (the load generator and the server
must not share an interpreter), each on a free loopback port with a fresh
temporary data directory that is removed afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import resource
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from syncline.cluster._local_cluster import LocalCluster

BENCH_DIR = Path(__file__).resolve().parent
APP_DIR = BENCH_DIR / "app"
HOST = "127.0.0.1"
READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0


def log(message: str) -> None:
    """Progress output: stderr, so stdout carries only results."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """A server running in a child process; ``url`` is its base HTTP address."""

    name: str
    process: asyncio.subprocess.Process
    port: int
    data_dir: Path
    output: list[str] = field(default_factory=list)
    _drain: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid


async def _drain_output(server: ServerProcess, ready: asyncio.Event) -> None:
    """Read the child's stdout until EOF; set ``ready`` on its "Ready." line."""
    assert server.process.stdout is not None
    async for raw in server.process.stdout:
        line = raw.decode(errors="replace").rstrip()
        server.output.append(line)
        if "Ready." in line:
            ready.set()


@contextlib.asynccontextmanager
async def run_server(name: str, argv: Sequence[str], port: int) -> AsyncIterator[ServerProcess]:
    """Start ``argv`` (which must serve on ``port``); stop it with SIGTERM on exit.

    The placeholder ``{data}`` in ``argv`` is replaced by a fresh temporary
    directory on the same file system as everything else under the temp root,
    so both targets pay the same fsync cost.
    """
    data_dir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    argv = [a.replace("{data}", str(data_dir)) for a in argv]
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    server = ServerProcess(name, process, port, data_dir)
    ready = asyncio.Event()
    server._drain = asyncio.create_task(_drain_output(server, ready), name=f"{name}-output")
    try:
        waiter = asyncio.create_task(ready.wait(), name=f"{name}-ready")
        exited = asyncio.create_task(process.wait(), name=f"{name}-exit")
        done, _ = await asyncio.wait(
            {waiter, exited}, timeout=READY_TIMEOUT_SECONDS, return_when=asyncio.FIRST_COMPLETED
        )
        waiter.cancel()
        exited.cancel()
        if waiter not in done:
            raise RuntimeError(f"{name} did not become ready:\n" + "\n".join(server.output[-30:]))
        async with aiohttp.ClientSession() as session, session.get(f"{server.url}/version") as r:
            r.raise_for_status()
        log(f"{name} ready on port {port} (pid {process.pid}, data {data_dir})")
        yield server
    finally:
        await _stop(server)
        shutil.rmtree(data_dir, ignore_errors=True)


async def _stop(server: ServerProcess) -> None:
    process = server.process
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT_SECONDS)
        except TimeoutError:
            log(f"{server.name} ignored SIGTERM; killing pid {process.pid}")
            process.kill()
            await process.wait()
    if server._drain is not None:
        with contextlib.suppress(asyncio.CancelledError):
            await server._drain


@contextlib.asynccontextmanager
async def local_cluster(name: str, **create: Any) -> AsyncIterator[LocalCluster]:
    """``syncline cluster`` serving bench/app in a fresh temporary directory, stopped
    and removed afterwards; ``create`` goes to :meth:`LocalCluster.create`."""
    # PostgreSQL runs as its own user when we are root: it must enter the directory.
    base = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    base.chmod(0o755)
    local = LocalCluster.create(base / "cluster", APP_DIR, **create)
    try:
        regions = len(local.gateway_urls)
        log(f"starting a local cluster ({regions} region{'s' if regions > 1 else ''})")
        await local.up(log)
        yield local
    finally:
        await local.down(log)
        shutil.rmtree(base, ignore_errors=True)


def service_pids(local: LocalCluster, roles: Sequence[str] = ("gateway", "sync")) -> dict[str, int]:
    """The pids of a local cluster's services of ``roles``, by service name."""
    return {
        s.spec.name: s.pid for s in local.services if s.spec.role in roles and s.pid is not None
    }


def syncline_argv(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "syncline.cli",
        "dev",
        str(APP_DIR),
        "--port",
        str(port),
        "--data",
        "{data}",
        "--no-watch",
    ]


def plain_argv(port: int) -> list[str]:
    return [
        sys.executable,
        str(BENCH_DIR / "plain_endpoint.py"),
        "--port",
        str(port),
        "--db",
        "{data}/plain.sqlite3",
    ]


# -- CPU accounting ----------------------------------------------------------

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Fields after the parenthesised command name; utime and stime are 14 and 15.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def own_cpu_seconds() -> float:
    """User + system CPU time of this (load generator) process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_busy_cpu_seconds() -> float:
    """CPU time spent busy (not idle, not waiting for I/O) by all cores, from /proc/stat."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    # guest time is already counted in user time.
    return (sum(fields[:8]) - idle) / _CLOCK_TICKS


def child_pids() -> dict[int, list[int]]:
    """Parent pid -> child pids of every process on the machine, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        # The parent pid is the second field after the parenthesised command name.
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    return children


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (e.g. a PostgreSQL postmaster and its backends)."""
    children = child_pids()
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def _cpu_by_pid(pids: Sequence[int]) -> dict[int, float]:
    """CPU seconds of each pid still running (vanished ones are left out)."""
    cpu = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            cpu[pid] = process_cpu_seconds(pid)
    return cpu


class CpuMeter:
    """CPU used by the server(s), by this process and by anything else over an interval.

    ``servers`` is one server pid (reported as ``server_cpu_pct``) or a mapping
    from a name to a pid (each reported as ``<name>_cpu_pct``). With
    ``with_descendants`` a server's figure includes its child processes alive at
    the end of the interval (PostgreSQL's backends; a child that exits during
    the interval is not counted).

    "Other" is everything else on the machine (e.g. a test suite running
    meanwhile); when it is high the figures are not representative.
    """

    def __init__(self, servers: int | Mapping[str, int], *, with_descendants: bool = False) -> None:
        self._servers = {"server": servers} if isinstance(servers, int) else dict(servers)
        self._with_descendants = with_descendants
        self._start = self._sample()

    def _sample(self) -> tuple[float, dict[str, dict[int, float]], float, float]:
        per_server = {
            name: _cpu_by_pid(process_tree(pid) if self._with_descendants else [pid])
            for name, pid in self._servers.items()
        }
        return time.perf_counter(), per_server, own_cpu_seconds(), machine_busy_cpu_seconds()

    def stop(self) -> dict[str, float]:
        """Percent of one core used by each side since the meter started."""
        end_wall, end_servers, end_client, end_machine = self._sample()
        start_wall, start_servers, start_client, start_machine = self._start
        wall = end_wall - start_wall
        result = {}
        for name, end in end_servers.items():
            start = start_servers[name]
            # A process started during the interval counts from zero.
            seconds = sum(cpu - start.get(pid, 0.0) for pid, cpu in end.items())
            result[f"{name}_cpu_pct"] = 100 * seconds / wall
        client = end_client - start_client
        servers = sum(result.values()) * wall / 100
        other = max(0.0, end_machine - start_machine - servers - client)
        result["client_cpu_pct"] = 100 * client / wall
        result["other_cpu_pct"] = 100 * other / wall
        return result


# -- statistics --------------------------------------------------------------


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (NaN when empty)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def summarize_ms(latencies_seconds: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/max (and mean) in milliseconds."""
    values = sorted(latencies_seconds)
    mean = sum(values) / len(values) if values else math.nan
    return {
        "p50_ms": percentile(values, 0.50) * 1000,
        "p90_ms": percentile(values, 0.90) * 1000,
        "p99_ms": percentile(values, 0.99) * 1000,
        "max_ms": (values[-1] if values else math.nan) * 1000,
        "mean_ms": mean * 1000,
    }


# -- output ------------------------------------------------------------------


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table; floats get one decimal place (or two below 10)."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            if math.isnan(value):
                return "-"
            return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"
        return str(value)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = [
        "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)),
        "  ".join("-" * w for w in widths),
    ]
    for raw, row in zip(rows, cells, strict=True):
        # Text left-aligned, numbers right-aligned.
        lines.append(
            "  ".join(
                c.ljust(w) if isinstance(v, str) else c.rjust(w)
                for v, c, w in zip(raw, row, widths, strict=True)
            )
        )
    return "\n".join(lines)


def write_json(path: str | None, results: dict[str, Any]) -> None:
    """Write results as JSON (NaN, i.e. "no sample", becomes null)."""
    if path:
        text = json.dumps(_without_nan(results), indent=2, allow_nan=False, default=str)
        Path(path).write_text(text + "\n")
        log(f"wrote {path}")


def _without_nan(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _without_nan(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_without_nan(v) for v in value]
    return value


def machine_description() -> dict[str, Any]:
    """What the numbers were measured on."""
    import platform

    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": _cpu_model(),
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def runs_table(runs: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """A closed-loop run per row: ``columns`` are (header, summary key) pairs.

    Rates and CPU percentages are rounded; a missing ratio shows as nan.
    """

    def cell(key: str, value: Any) -> Any:
        if value is None:
            return math.nan
        if key == "ok_per_s" or key.endswith("_cpu_pct"):
            return round(value)
        return value

    rows = [[cell(key, run[key]) for _, key in columns] for run in runs]
    return format_table([header for header, _ in columns], rows)


def print_runs(
    title: str, runs: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]
) -> None:
    """The title, the table, then each target's first error, if it had any."""
    print(title)
    print(runs_table(runs, columns))
    for run in runs:
        if run["first_error"]:
            print(f"  {run['target']}: first error: {run['first_error']}")
