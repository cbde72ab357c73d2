"""Faults for ``syncline verify --faults`` on a local cluster (``syncline cluster up``),
and the one fault that needs no cluster access (``drop-clients``).

While a workload runs, the nemesis takes the faults in turn: it injects one,
holds it for ``duration_seconds``, heals it, waits for the cluster to serve
again and for clients to be served again, then rests ``rest_seconds`` before
the next. Each fault's window is recorded so the report can show how long
clients went without an answer.

Faults (``ROLE`` is txn, sync, gateway or scheduler; txn and scheduler pick the
leader):

- ``kill-ROLE``: SIGKILL one process; healed by starting it again.
- ``stop-ROLE``: SIGSTOP one process (it hangs, holding its connections and
  ZooKeeper session until that expires); healed by SIGCONT.
- ``expire-txn``, ``expire-scheduler``: the leader's link to ZooKeeper holds all
  traffic until ZooKeeper expires its session and a standby leads, while the old
  leader runs on with its PostgreSQL connections; healed by letting it flow.
- ``skew-txn``, ``skew-scheduler``: a node whose wall clock is a few seconds
  ahead or behind (libfaketime) takes over as leader; healed by restarting it on
  the true clock.
- ``restart-postgres``: PostgreSQL's immediate shutdown (SIGQUIT: no checkpoint,
  crash recovery on start), then started again.
- ``restart-redis``: Redis killed and started again (presence and rate limits
  are hints: nothing durable may be lost).
- ``partition-REGION``: every link between REGION and the primary's region holds
  all traffic; healed by letting it flow again.
- ``pause-replica-REGION``: REGION's replica stops applying the primary's changes
  (its subscription disabled); healed by enabling it.
- ``drop-clients``: every client connection is reset (RST) again and again, a
  fraction of a second apart, so mutations are cut off in flight; the workload's
  clients connect through proxies of this module for it (:meth:`Nemesis.client_links`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from syncline._errors import ConfigError
from syncline.cluster._local_cluster import LocalCluster, LocalService
from syncline.devservers import FaultProxy, faketime_environment
from syncline.verify import ClientSuccesses, FaultWindow

log = logging.getLogger(__name__)

ROLES = ("txn", "sync", "gateway", "scheduler")
ELECTED = ("txn", "scheduler")
RECOVERY_TIMEOUT_SECONDS = 60.0
SKEW_SECONDS = (2.0, 8.0)
"""How far a skewed leader's clock is off, either way (drawn from the seed)."""
RESET_INTERVAL_SECONDS = (0.2, 0.8)
"""How long clients' connections live between two resets under drop-clients."""


def fault_names(cluster: LocalCluster | None) -> list[str]:
    """Every fault this cluster supports (without one, against any deployment, only
    the one made in this process: drop-clients)."""
    if cluster is None:
        return ["drop-clients"]
    names = [f"{kind}-{role}" for kind in ("kill", "stop") for role in ROLES]
    if cluster.zookeeper_links:
        names += [f"expire-{role}" for role in ELECTED]
    names += [f"skew-{role}" for role in ELECTED]
    names += ["restart-postgres", "restart-redis", "drop-clients"]
    for region in cluster.regions:
        names += [f"partition-{region}", f"pause-replica-{region}"]
    return names


def parse_faults(cluster: LocalCluster | None, text: str) -> list[str]:
    """``all`` or a comma-separated list; ConfigError names an unknown fault."""
    known = fault_names(cluster)
    wanted = known if text.strip() == "all" else [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in wanted if f not in known]
    if unknown or not wanted:
        where = "this cluster supports" if cluster else "without --cluster, only"
        raise ConfigError(
            f"unknown fault {', '.join(unknown) or '(none given)'}; {where}: " + ", ".join(known)
        )
    if any(fault.startswith("skew-") for fault in wanted):
        faketime_environment(0.0)  # a ConfigError says how to install libfaketime
    return wanted


class Nemesis:
    """Injects faults into a local cluster while a workload runs (without a cluster:
    drop-clients only, against any deployment)."""

    def __init__(
        self,
        cluster: LocalCluster | None,
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
        self._client_links: list[FaultProxy] = []

    @contextlib.asynccontextmanager
    async def client_links(self, urls: Sequence[str]) -> AsyncIterator[tuple[str, ...]]:
        """The URLs clients should use: with ``drop-clients`` among the faults, each
        gateway's through a proxy of ours that the fault resets; else ``urls``."""
        if "drop-clients" not in self._faults:
            yield tuple(urls)
            return
        secure = [url for url in urls if urllib.parse.urlsplit(url).scheme != "http"]
        if secure:
            raise ConfigError(
                f"drop-clients needs http:// URLs, not {secure[0]}: its proxy would not match "
                "a TLS certificate's host name; point it at a gateway's plain HTTP port"
            )
        proxied = []
        try:
            for url in urls:
                parts = urllib.parse.urlsplit(url)
                proxy = FaultProxy(parts.port or 80, upstream_host=parts.hostname or "127.0.0.1")
                await proxy.start()
                self._client_links.append(proxy)
                proxied.append(parts._replace(netloc=proxy.address).geturl())
            yield tuple(proxied)
        finally:
            links, self._client_links = self._client_links, []
            for proxy in links:
                await proxy.close()

    async def run(self, stop: asyncio.Event, successes: ClientSuccesses) -> list[FaultWindow]:
        """Inject faults in turn until ``stop`` is set; every fault is healed before
        this returns. The rest before the next fault begins once clients are served
        again, so that each fault's outage is its own."""
        windows: list[FaultWindow] = []
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._rest)
            if stop.is_set():
                break
            fault = self._faults[self._next % len(self._faults)]
            self._next += 1
            window = await self._one(fault)
            windows.append(window)
            await self._until_served_since(window.healed_ns, successes, stop)
        return windows

    async def _one(self, fault: str) -> FaultWindow:
        started = time.monotonic_ns()
        target, heal = await self._inject(fault)
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

    @staticmethod
    async def _until_served_since(
        since_ns: int, successes: ClientSuccesses, stop: asyncio.Event
    ) -> None:
        deadline = time.monotonic() + RECOVERY_TIMEOUT_SECONDS
        while not stop.is_set() and time.monotonic() < deadline:
            last = successes.last_ok_ns()
            if last is not None and last >= since_ns:
                return
            await asyncio.sleep(0.05)

    async def _inject(self, fault: str) -> tuple[str, Callable[[], Awaitable[Any]]]:
        """Inject ``fault``; what it hit, and how to heal it."""
        if fault == "drop-clients":
            return self._drop_clients()
        cluster = self._local
        kind, _, subject = fault.partition("-")
        if kind in ("kill", "stop"):
            service = await self._pick(subject)
            pid = service.pid
            if pid is None:
                raise ConfigError(f"{service.spec.name} is not running")
            os.kill(pid, signal.SIGKILL if kind == "kill" else signal.SIGSTOP)
            if kind == "kill":
                return f"{service.spec.name} (pid {pid})", self._start_missing
            return f"{service.spec.name} (pid {pid})", lambda: _resume(pid)
        if kind == "expire":
            return await self._expire_session(subject)
        if kind == "skew":
            return await self._skew_leader(subject)
        if fault == "restart-postgres":
            pid = cluster.postgres.pid
            if pid is not None:
                os.kill(pid, signal.SIGQUIT)  # immediate shutdown: crash recovery on start
            return f"postgres (pid {pid})", self._start_missing
        if fault == "restart-redis":
            pid = cluster.redis.pid
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
            return f"redis (pid {pid})", self._start_missing
        if kind == "partition":
            await cluster.set_faults(subject, hold=True)
            return f"links of {subject}", lambda: cluster.set_faults(subject, action="heal")
        if fault.startswith("pause-replica-"):
            region = fault.removeprefix("pause-replica-")
            await cluster.pause_replica(region, True)
            return f"replica of {region}", lambda: cluster.pause_replica(region, False)
        raise ConfigError(f"unknown fault {fault}")

    async def _expire_session(self, role: str) -> tuple[str, Callable[[], Awaitable[Any]]]:
        """Cut the leader off ZooKeeper until a standby leads: its session expired."""
        leader = await self._local.leader(role)
        if leader is None:
            raise ConfigError(f"no {role} node leads: nothing to expire")
        name = leader.spec.name
        await self._local.hold_zookeeper(name, True)
        successor = await self._until_led_by_other(role, leader)
        target = f"{name}'s ZooKeeper session; {successor or 'no other node'} took over"
        return target, lambda: self._local.hold_zookeeper(name, False)

    async def _skew_leader(self, role: str) -> tuple[str, Callable[[], Awaitable[Any]]]:
        """Restart a standby of ``role`` on a skewed clock, then stop the leader so
        the skewed one leads (the old leader comes back as its standby)."""
        cluster = self._local
        leader = await cluster.leader(role)
        others = [s for s in cluster.services if s.spec.role == role and s is not leader and s.pid]
        if leader is None or not others:
            raise ConfigError(f"skew-{role} needs a {role} leader and a standby")
        skewed = others[0].spec.name
        offset = self._rng.choice((-1, 1)) * round(self._rng.uniform(*SKEW_SECONDS), 1)
        await cluster.restart_service(skewed, clock_offset_seconds=offset)
        await leader.stop()
        await self._until_led_by_other(role, leader)
        await self._start_missing()
        target = f"{skewed} leads with its clock {offset:+g} s off"
        return target, lambda: cluster.restart_service(skewed)

    def _drop_clients(self) -> tuple[str, Callable[[], Awaitable[Any]]]:
        links = self._client_links
        if not links:
            raise ConfigError("drop-clients needs the clients to connect through client_links()")
        rng = random.Random(self._rng.random())

        async def reset_again_and_again() -> None:
            while True:
                await asyncio.sleep(rng.uniform(*RESET_INTERVAL_SECONDS))
                for proxy in links:
                    proxy.reset()

        resets = asyncio.create_task(reset_again_and_again(), name="nemesis-drop-clients")

        async def heal() -> None:
            resets.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await resets

        low, high = RESET_INTERVAL_SECONDS
        return f"client connections, reset every {low:g}-{high:g} s", heal

    async def _until_led_by_other(self, role: str, former: LocalService) -> str | None:
        """The name of the node that leads ``role`` in place of ``former``, once one
        does (None if none does in time)."""
        deadline = time.monotonic() + RECOVERY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            leader = await self._local.leader(role)
            if leader is not None and leader.spec.name != former.spec.name:
                return leader.spec.name
            await asyncio.sleep(0.2)
        log.warning("no other %s node took over within %g s", role, RECOVERY_TIMEOUT_SECONDS)
        return None

    async def _pick(self, role: str) -> LocalService:
        if role in ELECTED:
            leader = await self._local.leader(role)
            if leader is not None:
                return leader
        running = [s for s in self._local.services if s.spec.role == role and s.pid is not None]
        if not running:
            raise ConfigError(f"no {role} process is running")
        return self._rng.choice(running)

    @property
    def _local(self) -> LocalCluster:
        if self._cluster is None:
            raise ConfigError("this fault needs a local cluster (--cluster)")
        return self._cluster

    async def _start_missing(self) -> None:
        await self._local.up(lambda message: log.debug("%s", message))

    async def _wait_until_serving(self) -> None:
        """Until every process runs and the txn (and scheduler) have leaders."""
        if self._cluster is None:
            return
        deadline = time.monotonic() + RECOVERY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if all(s.pid is not None for s in self._local.services) and all(
                [await self._local.leader(role) for role in ELECTED if self._has(role)]
            ):
                return
            await asyncio.sleep(0.2)
        log.warning("the cluster did not recover within %g s", RECOVERY_TIMEOUT_SECONDS)

    def _has(self, role: str) -> bool:
        return any(s.spec.role == role for s in self._local.services)


async def _resume(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)
