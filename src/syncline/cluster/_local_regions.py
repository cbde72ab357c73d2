"""The non-primary regions of a local cluster: a replica and the links to the primary.

Each region has its own PostgreSQL, a logical replica of the primary, its own
Redis for presence, and its own sync node and gateway (started by the cluster as
services). Everything that
crosses from a region to the primary's region goes through a fault proxy of its
own, so a delay or a partition between regions is real: the replication
stream, ZooKeeper, and each txn node. ``syncline cluster faults`` sets them.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from psycopg.conninfo import make_conninfo

from syncline._errors import SynclineError
from syncline.devservers import LocalFaultProxy, LocalPostgres, LocalRedis, free_port
from syncline.storage import ReplicaStatus, add_replica, pause_replica, replica_status

DATABASE = "syncline"
COPY_TIMEOUT_SECONDS = 120.0


@dataclass
class LinkSpec:
    """One proxied link from a region to a server of the primary's region."""

    name: str
    """``replication``, ``zookeeper``, or the txn node's name."""
    upstream: str
    """``host:port`` in the primary's region."""
    port: int = field(default_factory=free_port)
    control_port: int = field(default_factory=free_port)


@dataclass
class RegionSpec:
    """A non-primary region as ``cluster.json`` records it."""

    name: str
    postgres_port: int = field(default_factory=free_port)
    links: list[LinkSpec] = field(default_factory=list)
    redis_port: int = field(default_factory=free_port)
    """The region's own Redis, for presence."""

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RegionSpec:
        links = [LinkSpec(**link) for link in raw.get("links", [])]
        redis_port = int(raw["redis_port"]) if "redis_port" in raw else free_port()
        return cls(str(raw["name"]), int(raw["postgres_port"]), links, redis_port)


class LocalRegion:
    """The replica and links of one region, as processes under the data directory."""

    def __init__(self, data_dir: Path, spec: RegionSpec, *, delay_ms: float) -> None:
        self.spec = spec
        self.replica = LocalPostgres(
            data_dir / f"postgres-{spec.name}", port=spec.postgres_port, fsync=True
        )
        self.redis = LocalRedis(data_dir / f"redis-{spec.name}", port=spec.redis_port)
        self.links = {
            link.name: LocalFaultProxy(
                data_dir / f"link-{spec.name}-{link.name}",
                port=link.port,
                upstream=link.upstream,
                control_port=link.control_port,
                delay_ms=delay_ms,
                label=f"link {spec.name}/{link.name}",
            )
            for link in spec.links
        }

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def dsn(self) -> str:
        return self.replica.dsn(DATABASE)

    @property
    def zk_hosts(self) -> str:
        return self.links["zookeeper"].address

    def txn_routes(self, txn_addresses: dict[str, str]) -> list[str]:
        """``--txn-route`` values: each txn node (by name) through its link."""
        return [f"{address}={self.links[name].address}" for name, address in txn_addresses.items()]

    def through_link(self, primary_dsn: str) -> str:
        """How this region reaches the primary's PostgreSQL: through its link."""
        link = self.links["replication"]
        return make_conninfo(primary_dsn, host="127.0.0.1", port=str(link.port))

    async def subscribe(self, primary_dsn: str) -> None:
        """Make the replica follow the primary through the replication link; wait
        until it has copied what the primary holds."""
        through_link = self.through_link(primary_dsn)
        try:
            await self.replica.create_database(DATABASE)
        except Exception as exc:  # already there: a second `up`
            if "already exists" not in str(exc):
                raise
        await add_replica(primary_dsn, self.dsn, self.name, primary_conninfo=through_link)
        deadline = time.monotonic() + COPY_TIMEOUT_SECONDS
        while not (await self.status(primary_dsn)).copied:
            if time.monotonic() > deadline:
                raise SynclineError(
                    f"region {self.name}: the replica did not copy the primary within "
                    f"{COPY_TIMEOUT_SECONDS:g} s; see {self.replica.log_file}"
                )
            await asyncio.sleep(0.1)

    async def pause(self) -> None:
        """Stop the replica applying the primary's changes; ``subscribe`` resumes it."""
        await pause_replica(self.dsn, self.name)

    async def status(self, primary_dsn: str) -> ReplicaStatus:
        return await replica_status(primary_dsn, self.dsn, self.name)

    async def set_faults(
        self, *, delay_ms: float | None, hold: bool | None, drop: str | None
    ) -> None:
        changes: dict[str, object] = {}
        if delay_ms is not None:
            changes["delay_ms"] = delay_ms
        if hold is not None:
            changes["hold"] = hold
        if drop is not None:
            changes["drop"] = drop
        try:
            await asyncio.gather(*(link.faults(**changes) for link in self.links.values()))
        except (aiohttp.ClientError, OSError) as exc:
            raise self._not_running() from exc

    async def control(self, action: str) -> None:
        """``heal`` or ``reset`` every link of the region."""
        try:
            await asyncio.gather(*(link.control(action) for link in self.links.values()))
        except (aiohttp.ClientError, OSError) as exc:
            raise self._not_running() from exc

    def _not_running(self) -> SynclineError:
        return SynclineError(
            f"the links of region {self.name} are not running; start the cluster with "
            "`syncline cluster up`"
        )
