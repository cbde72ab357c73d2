"""Faults for ``syncline verify --faults`` on a local cluster (``syncline cluster up``).

While a workload runs, the nemesis takes the faults in turn: it injects one,
holds it for ``duration_seconds``, heals it, waits for the cluster to serve
again, then rests ``rest_seconds`` before the next. Each fault's window is
recorded so the report can show how long clients went without an answer.

Faults (``ROLE`` is txn, sync, gateway or scheduler; txn and scheduler pick the
leader):

- ``kill-ROLE``: SIGKILL one process; healed by starting it again.
- ``stop-ROLE``: SIGSTOP one process (it hangs, holding its connections and
  ZooKeeper session until that expires); healed by SIGCONT.
- ``restart-postgres``: PostgreSQL's immediate shutdown (SIGQUIT: no checkpoint,
  crash recovery on start), then started again.
- ``restart-redis``: Redis killed and started again (presence and rate limits
  are hints: nothing durable may be lost).
- ``partition-REGION``: every link between REGION and the primary's region holds
  all traffic; healed by letting it flow again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import time
from collections.abc import Callable
from typing import Any

from syncline._errors import ConfigError
from syncline.cluster._local_cluster import LocalCluster, LocalService
from syncline.verify import FaultWindow

log = logging.getLogger(__name__)

ROLES = ("txn", "sync", "gateway", "scheduler")
ELECTED = ("txn", "scheduler")
RECOVERY_TIMEOUT_SECONDS = 60.0


def fault_names(cluster: LocalCluster) -> list[str]:
    """Every fault this cluster supports."""
    names = [f"{kind}-{role}" for kind in ("kill", "stop") for role in ROLES]
    names += ["restart-postgres", "restart-redis"]
    names += [f"partition-{region}" for region in cluster.regions]
    return names


def parse_faults(cluster: LocalCluster, text: str) -> list[str]:
    """``all`` or a comma-separated list; ConfigError names an unknown fault."""
    known = fault_names(cluster)
    wanted = known if text.strip() == "all" else [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in wanted if f not in known]
    if unknown or not wanted:
        raise ConfigError(
            f"unknown fault {', '.join(unknown) or '(none given)'}; this cluster supports: "
            + ", ".join(known)
        )
    return wanted


class Nemesis:
    """Injects faults into a local cluster while a workload runs."""

    def __init__(
        self,
        cluster: LocalCluster,
        faults: list[str],
        *,
        duration_seconds: float = 3.0,
        rest_seconds: float = 2.0,
        seed: int = 0,
        progress: Callable[[str], None] = lambda message: None,
    ) -> None:
        self._cluster = cluster
        self._faults = faults
        self._duration = duration_seconds
        self._rest = rest_seconds
        self._rng = random.Random(f"{seed}-nemesis")
        self._progress = progress
        self._next = 0

    async def run(self, stop: asyncio.Event) -> list[FaultWindow]:
        """Inject faults in turn until ``stop`` is set; every fault is healed before
        this returns."""
        windows: list[FaultWindow] = []
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._rest)
            if stop.is_set():
                break
            fault = self._faults[self._next % len(self._faults)]
            self._next += 1
            windows.append(await self._one(fault))
        return windows

    async def _one(self, fault: str) -> FaultWindow:
        kind, _, subject = fault.partition("-")
        started = time.monotonic_ns()
        target, heal = await self._inject(kind, subject)
        self._progress(f"fault {fault}: {target}")
        try:
            await asyncio.sleep(self._duration)
        finally:
            healed = time.monotonic_ns()
            await heal()
            await self._wait_until_serving()
        recovered = time.monotonic_ns()
        self._progress(
            f"fault {fault} healed; serving again {(recovered - healed) / 1e9:.1f} s later"
        )
        return FaultWindow(fault, target, started, healed, recovered)

    async def _inject(self, kind: str, subject: str) -> tuple[str, Callable[[], Any]]:
        cluster = self._cluster
        if kind in ("kill", "stop"):
            service = await self._pick(subject)
            pid = service.pid
            if pid is None:
                raise ConfigError(f"{service.spec.name} is not running")
            os.kill(pid, signal.SIGKILL if kind == "kill" else signal.SIGSTOP)
            if kind == "kill":
                return f"{service.spec.name} (pid {pid})", self._start_missing
            return f"{service.spec.name} (pid {pid})", lambda: _resume(pid)
        if kind == "restart" and subject == "postgres":
            pid = cluster.postgres.pid
            if pid is not None:
                os.kill(pid, signal.SIGQUIT)  # immediate shutdown: crash recovery on start
            return f"postgres (pid {pid})", self._start_missing
        if kind == "restart" and subject == "redis":
            pid = cluster.redis.pid
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
            return f"redis (pid {pid})", self._start_missing
        if kind == "partition":
            await cluster.set_faults(subject, hold=True)
            return f"links of {subject}", lambda: cluster.set_faults(subject, action="heal")
        raise ConfigError(f"unknown fault {kind}-{subject}")

    async def _pick(self, role: str) -> LocalService:
        if role in ELECTED:
            leader = await self._cluster.leader(role)
            if leader is not None:
                return leader
        running = [s for s in self._cluster.services if s.spec.role == role and s.pid is not None]
        if not running:
            raise ConfigError(f"no {role} process is running")
        return self._rng.choice(running)

    async def _start_missing(self) -> None:
        await self._cluster.up(lambda message: log.debug("%s", message))

    async def _wait_until_serving(self) -> None:
        """Until every process runs and the txn (and scheduler) have leaders."""
        deadline = time.monotonic() + RECOVERY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if all(s.pid is not None for s in self._cluster.services) and all(
                [await self._cluster.leader(role) for role in ELECTED if self._has(role)]
            ):
                return
            await asyncio.sleep(0.2)
        log.warning("the cluster did not recover within %g s", RECOVERY_TIMEOUT_SECONDS)

    def _has(self, role: str) -> bool:
        return any(s.spec.role == role for s in self._cluster.services)


async def _resume(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)
