"""A whole Syncline cluster on one machine, as detached processes in a data directory.

``syncline cluster up`` starts PostgreSQL, ZooKeeper and Redis from local
binaries, then 2 txn nodes, 2 sync nodes, a gateway and 2 scheduler nodes
(``python -m syncline.cluster ROLE``), each in its own session so they outlive the command,
each with its log and pid file under ``DATA/<name>/``. The txn and scheduler
nodes reach ZooKeeper through a fault proxy each, so one leader can be cut off
ZooKeeper (``syncline verify --faults expire-txn``). ``cluster.json`` in the
data directory records the ports, so ``down`` and ``status`` (from any later
process) find everything, and a second ``up`` reuses the same ports and data.
The instance secret is ``DATA/instance_secret``: ``syncline admin-key --data
DATA`` issues keys for the cluster too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import grpc
import psycopg

from syncline._errors import SynclineError
from syncline.auth import REVOKED_KEYS_FILENAME, AdminKeys, load_or_create_instance_secret
from syncline.cluster._local_regions import LinkSpec, LocalRegion, RegionSpec
from syncline.devservers import (
    LocalFaultProxy,
    LocalPostgres,
    LocalRedis,
    LocalServer,
    LocalZooKeeper,
    faketime_environment,
    free_port,
)
from syncline.devservers._process import PidFileServer, clean_environment, spawn
from syncline.storage._replication import subscription_name
from syncline.v1 import syncline_pb2 as pb
from syncline.v1 import syncline_pb2_grpc as pb_grpc

STATE_FILE = "cluster.json"
DATABASE = "syncline"
REGION = "local"
LEADER_TIMEOUT_SECONDS = 60.0
Progress = Callable[[str], None]


class ClusterError(SynclineError):
    code = "ClusterError"


@dataclass
class ServiceSpec:
    """One Syncline process of the cluster."""

    name: str
    role: str
    port: int
    """gRPC port (the gateway's is its native-client port)."""
    http_port: int
    """HTTP port: health for txn and sync, the client API for the gateway."""
    region: str = ""
    """A non-primary region it serves ("": the primary's)."""
    zookeeper_link: LinkSpec | None = None
    """Its own proxied link to ZooKeeper (the primary region's elected nodes), so a
    fault can cut one leader off ZooKeeper until its session expires."""

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ServiceSpec:
        link = raw.pop("zookeeper_link", None)
        return cls(**raw, zookeeper_link=LinkSpec(**link) if link else None)


@dataclass
class ClusterState:
    """What ``cluster.json`` holds: enough to find and stop every process later."""

    app_dir: str
    region: str = REGION
    postgres_port: int = field(default_factory=free_port)
    zookeeper_port: int = field(default_factory=free_port)
    redis_port: int = field(default_factory=free_port)
    services: list[ServiceSpec] = field(default_factory=list)
    regions: list[RegionSpec] = field(default_factory=list)
    """The other regions (``region`` is the primary's), each with its replica."""
    inter_region_delay_ms: float = 0.0
    """The delay every link between regions starts with."""

    @classmethod
    def load(cls, data_dir: Path) -> ClusterState | None:
        path = data_dir / STATE_FILE
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise ClusterError(f"{path} is not valid JSON; remove it to start afresh") from exc
        raw["services"] = [ServiceSpec.from_json(spec) for spec in raw.get("services", [])]
        raw["regions"] = [RegionSpec.from_json(region) for region in raw.get("regions", [])]
        return cls(**raw)

    def save(self, data_dir: Path) -> None:
        path = data_dir / STATE_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(self), indent=2) + "\n")
        temporary.replace(path)


ELECTED_ROLES = ("txn", "scheduler")
"""Roles with one leader and standbys."""


def _default_services(state: ClusterState, regions: list[str]) -> list[ServiceSpec]:
    roles = [("txn0", "txn"), ("txn1", "txn"), ("sync0", "sync"), ("sync1", "sync")]
    roles += [("gateway0", "gateway"), ("scheduler0", "scheduler"), ("scheduler1", "scheduler")]
    zookeeper = f"127.0.0.1:{state.zookeeper_port}"
    specs = [
        ServiceSpec(
            name,
            role,
            free_port(),
            free_port(),
            zookeeper_link=LinkSpec("zookeeper", zookeeper) if role in ELECTED_ROLES else None,
        )
        for name, role in roles
    ]
    for region in regions:
        for role in ("sync", "gateway"):
            specs.append(ServiceSpec(f"{role}-{region}", role, free_port(), free_port(), region))
    return specs


def _region_spec(name: str, state: ClusterState) -> RegionSpec:
    links = [
        LinkSpec("replication", f"127.0.0.1:{state.postgres_port}"),
        LinkSpec("zookeeper", f"127.0.0.1:{state.zookeeper_port}"),
    ]
    links += [
        LinkSpec(spec.name, f"127.0.0.1:{spec.port}")
        for spec in state.services
        if spec.role == "txn"
    ]
    return RegionSpec(name, links=links)


class LocalService(PidFileServer):
    """One ``python -m syncline.cluster ROLE`` process, with its log and pid file."""

    _marker = "syncline.cluster"

    def __init__(self, spec: ServiceSpec, data_dir: Path, flags: list[str], env: dict[str, str]):
        super().__init__(
            data_dir, port=spec.port, start_timeout_seconds=60.0, stop_timeout_seconds=20.0
        )
        self.spec = spec
        self._name = f"{spec.role} node {spec.name}"
        self._flags = flags
        self._env = env

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.spec.port}"

    @property
    def log_file(self) -> Path:
        return self._data_dir / f"{self.spec.name}.log"

    @property
    def _pid_file(self) -> Path:
        return self._data_dir / f"{self.spec.name}.pid"

    def _prepare(self) -> None:
        self._data_dir.mkdir(parents=True, exist_ok=True)

    def _spawn(self, log: IO[bytes]) -> Any:
        argv = [sys.executable, "-m", "syncline.cluster", self.spec.role, *self._flags]
        env = clean_environment({**self._env, "PYTHONUNBUFFERED": "1"})
        return spawn(argv, log=log, cwd=self._data_dir, env=env)

    async def health(self) -> pb.HealthResponse | None:
        async with grpc.aio.insecure_channel(self.address) as channel:
            try:
                health: pb.HealthResponse = await pb_grpc.HealthStub(channel).Check(
                    pb.HealthRequest(), timeout=1.0
                )
            except grpc.aio.AioRpcError:
                return None
            return health

    async def _ready(self) -> bool:
        health = await self.health()
        if health is None:
            return False
        # A standby serves too; the cluster waits for a txn leader separately.
        return self.spec.role in ELECTED_ROLES or health.status == pb.HealthResponse.SERVING


class LocalCluster:
    """The processes of one local cluster, described by its data directory."""

    def __init__(self, data_dir: Path, state: ClusterState) -> None:
        self.data_dir = data_dir.absolute()
        self.state = state
        self.postgres = LocalPostgres(
            self.data_dir / "postgres", port=state.postgres_port, fsync=True
        )
        self.zookeeper = LocalZooKeeper(self.data_dir / "zookeeper", port=state.zookeeper_port)
        self.redis = LocalRedis(self.data_dir / "redis", port=state.redis_port)
        self._secret = load_or_create_instance_secret(self.data_dir)
        self.regions = {
            spec.name: LocalRegion(self.data_dir, spec, delay_ms=state.inter_region_delay_ms)
            for spec in state.regions
        }
        self.zookeeper_links = {
            spec.name: LocalFaultProxy(
                self.data_dir / f"link-{spec.name}-zookeeper",
                port=spec.zookeeper_link.port,
                upstream=spec.zookeeper_link.upstream,
                control_port=spec.zookeeper_link.control_port,
                label=f"link {spec.name}/zookeeper",
            )
            for spec in state.services
            if spec.zookeeper_link is not None
        }
        self.services = [self._service(spec) for spec in state.services]

    @classmethod
    def open(cls, data_dir: Path) -> LocalCluster:
        """The cluster recorded in ``data_dir``; ClusterError if there is none."""
        state = ClusterState.load(data_dir)
        if state is None:
            raise ClusterError(
                f"no cluster in {data_dir}: start one with `syncline cluster up --data {data_dir}`"
            )
        return cls(data_dir, state)

    @classmethod
    def create(
        cls,
        data_dir: Path,
        app_dir: Path,
        *,
        regions: list[str] | None = None,
        inter_region_delay_ms: float = 0.0,
    ) -> LocalCluster:
        """The cluster in ``data_dir`` (made, with new ports, if there is none).

        ``regions``: the first is the primary's; each other one gets a replica, a
        sync node and a gateway, linked to the primary's region through fault
        proxies that start with ``inter_region_delay_ms``.
        """
        names = regions or [REGION]
        for name in names:
            subscription_name(name)  # a ConfigError names a bad region
        if len(set(names)) != len(names):
            raise ClusterError(f"regions must differ, got {', '.join(names)}")
        # PostgreSQL runs as the postgres user when we are root: it must enter here.
        data_dir.mkdir(parents=True, exist_ok=True)
        data_dir.chmod(0o755)
        state = ClusterState.load(data_dir)
        if state is None:
            state = ClusterState(str(app_dir.absolute()), region=names[0])
            state.services = _default_services(state, names[1:])
            state.regions = [_region_spec(name, state) for name in names[1:]]
            state.inter_region_delay_ms = inter_region_delay_ms
        elif regions is not None and [state.region, *(r.name for r in state.regions)] != names:
            raise ClusterError(
                f"{data_dir} holds a cluster with regions "
                f"{', '.join([state.region, *(r.name for r in state.regions)])}; use another "
                "--data, or `syncline cluster down` it and remove the directory"
            )
        state.app_dir = str(app_dir.absolute())
        state.save(data_dir)
        return cls(data_dir, state)

    def gateway_in(self, region: str) -> LocalService:
        """The gateway serving ``region``."""
        wanted = "" if region == self.state.region else region
        return next(
            s for s in self.services if s.spec.role == "gateway" and s.spec.region == wanted
        )

    @property
    def gateway(self) -> LocalService:
        return self.gateway_in(self.state.region)

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway.spec.http_port}"

    @property
    def gateway_urls(self) -> dict[str, str]:
        """Each region's gateway URL, the primary's first."""
        return {
            region: f"http://127.0.0.1:{self.gateway_in(region).spec.http_port}"
            for region in [self.state.region, *self.regions]
        }

    def admin_key(self) -> str:
        return AdminKeys(self._secret).issue("cluster")

    def _service(self, spec: ServiceSpec, *, clock_offset_seconds: float = 0.0) -> LocalService:
        # A non-primary region reaches ZooKeeper, txn and the primary's data through
        # its links, and reads its own replica.
        region = self.regions.get(spec.region)
        zk_hosts = region.zk_hosts if region else f"127.0.0.1:{self.state.zookeeper_port}"
        if spec.name in self.zookeeper_links:
            zk_hosts = self.zookeeper_links[spec.name].address
        dsn = region.dsn if region else self.postgres.dsn(DATABASE)
        flags = ["--zk-hosts", zk_hosts]
        own_redis = region.redis.url if region else self.redis.url
        if spec.role == "gateway":
            flags += ["--region", spec.region or self.state.region, "--redis", own_redis]
            # Every client of a local cluster comes from this machine's one address.
            flags += ["--ip-rate", "off", "--ip-connection-rate", "off"]
            flags += ["--port", str(spec.http_port), "--grpc-port", str(spec.port)]
            return LocalService(spec, self.data_dir / spec.name, flags, {})
        flags += ["--app", self.state.app_dir, "--pg-dsn", dsn]
        flags += ["--port", str(spec.port), "--http-port", str(spec.http_port)]
        env = faketime_environment(clock_offset_seconds) if clock_offset_seconds else {}
        if spec.role == "scheduler":
            flags += ["--redis", own_redis]
        if spec.role == "sync":
            flags += ["--region", spec.region or self.state.region]
            # `syncline admin-key --data DATA --revoke NAME` revokes a key at once.
            flags += ["--revoked-admin-keys-file", str(self.data_dir / REVOKED_KEYS_FILENAME)]
            env["SYNCLINE_ADMIN_SECRET"] = self._secret.hex()
            # Presence: this region's Redis, and every other region's for rooms that
            # span regions (read directly, not through the region's links).
            redis_urls = {self.state.region: self.redis.url}
            redis_urls |= {name: r.redis.url for name, r in self.regions.items()}
            own = spec.region or self.state.region
            flags += ["--redis", redis_urls.pop(own)]
            for name, url in redis_urls.items():
                flags += ["--peer-redis", f"{name}={url}"]
            if region is not None:
                txn = {
                    s.name: f"127.0.0.1:{s.port}" for s in self.state.services if s.role == "txn"
                }
                for route in region.txn_routes(txn):
                    flags += ["--txn-route", route]
                # Reads move to the primary while the replica lags too far.
                flags += ["--primary-pg-dsn", region.through_link(self.postgres.dsn(DATABASE))]
        return LocalService(spec, self.data_dir / spec.name, flags, env)

    # -- up / down ---------------------------------------------------------------------

    async def up(self, progress: Progress) -> None:
        """Start whatever is not running, in dependency order; on failure stop what
        this call started and raise with the failing process's log tail."""
        started: list[LocalServer] = []
        try:
            await self._start_all([self.postgres, self.zookeeper, self.redis], started, progress)
            await self._start_all(list(self.zookeeper_links.values()), started, progress)
            await self._create_database()
            by_role = {
                role: [s for s in self.services if s.spec.role == role and not s.spec.region]
                for role in ("txn", "sync", "gateway", "scheduler")
            }
            await self._start_all(by_role["txn"], started, progress)
            await self._wait_for_leader("txn", progress)
            await self._start_all(by_role["sync"], started, progress)
            await self._start_all(by_role["gateway"], started, progress)
            if by_role["scheduler"]:
                await self._start_all(by_role["scheduler"], started, progress)
                await self._wait_for_leader("scheduler", progress)
            for region in self.regions.values():
                await self._start_all(
                    [region.replica, region.redis, *region.links.values()], started, progress
                )
                await region.subscribe(self.postgres.dsn(DATABASE))
                progress(f"region {region.name}: replica follows the primary")
                services = [s for s in self.services if s.spec.region == region.name]
                await self._start_all(
                    [s for s in services if s.spec.role == "sync"], started, progress
                )
                await self._start_all(
                    [s for s in services if s.spec.role == "gateway"], started, progress
                )
        except BaseException:
            progress("start failed; stopping what this command started")
            for server in reversed(started):
                with contextlib.suppress(Exception):
                    await server.stop()
            raise

    async def _start_all(
        self, servers: list[Any], started: list[LocalServer], progress: Progress
    ) -> None:
        pending = []
        for server in servers:
            if server.pid is not None:
                progress(f"{_label(server)} already running (pid {server.pid})")
            else:
                pending.append(server)
        results = await asyncio.gather(*(s.start() for s in pending), return_exceptions=True)
        for server, result in zip(pending, results, strict=True):
            if isinstance(result, BaseException):
                raise result
            started.append(server)
            progress(f"{_label(server)} started (pid {server.pid}, port {server.port})")

    async def _create_database(self) -> None:
        with contextlib.suppress(psycopg.errors.DuplicateDatabase):
            await self.postgres.create_database(DATABASE)

    async def _wait_for_leader(self, role: str, progress: Progress) -> None:
        deadline = time.monotonic() + LEADER_TIMEOUT_SECONDS
        while (leader := await self.leader(role)) is None:
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"no {role} node became leader within {LEADER_TIMEOUT_SECONDS:g} s; see "
                    + ", ".join(str(s.log_file) for s in self.services if s.spec.role == role)
                )
            await asyncio.sleep(0.1)
        progress(f"{role} node {leader.spec.name} leads")

    async def leader(self, role: str) -> LocalService | None:
        """The running node of an elected role (txn, scheduler) that leads, if any."""
        for service in self.services:
            if service.spec.role == role and service.pid is not None:
                health = await service.health()
                if health is not None and health.role == "leader":
                    return service
        return None

    async def down(self, progress: Progress) -> None:
        """Stop every process, Syncline's first; what is not running is skipped."""
        errors = []
        regional: list[LocalServer] = []
        for region in self.regions.values():
            regional += [*region.links.values(), region.replica, region.redis]
        for server in [
            *reversed(self.services),
            *self.zookeeper_links.values(),
            *regional,
            self.redis,
            self.zookeeper,
            self.postgres,
        ]:
            pid = server.pid
            if pid is None:
                continue
            try:
                await server.stop()
            except SynclineError as exc:
                errors.append(exc.message)
                continue
            progress(f"{_label(server)} stopped (pid {pid})")
        if errors:
            raise ClusterError("; ".join(errors))

    # -- faults ------------------------------------------------------------------------

    async def set_faults(
        self,
        region: str,
        *,
        delay_ms: float | None = None,
        hold: bool | None = None,
        drop: str | None = None,
        action: str | None = None,
    ) -> None:
        """Change the links between ``region`` and the primary's region
        (``action``: "heal" or "reset")."""
        local = self._region(region)
        if action is not None:
            await local.control(action)
        if delay_ms is not None or hold is not None or drop is not None:
            await local.set_faults(delay_ms=delay_ms, hold=hold, drop=drop)

    async def pause_replica(self, region: str, paused: bool) -> None:
        """Stop (or resume) ``region``'s replica applying the primary's changes."""
        local = self._region(region)
        if paused:
            await local.pause()
        else:
            await local.subscribe(self.postgres.dsn(DATABASE))

    async def restart_service(self, name: str, *, clock_offset_seconds: float = 0.0) -> None:
        """Stop one service gracefully and start it again, its wall clock
        ``clock_offset_seconds`` off the true time (0: true)."""
        index = next((i for i, s in enumerate(self.services) if s.spec.name == name), None)
        if index is None:
            raise ClusterError(f"no service {name!r} in this cluster")
        await self.services[index].stop()
        service = self._service(
            self.services[index].spec, clock_offset_seconds=clock_offset_seconds
        )
        self.services[index] = service
        await service.start()

    async def hold_zookeeper(self, name: str, hold: bool) -> None:
        """Stop (or let flow again) everything between one service and ZooKeeper."""
        link = self.zookeeper_links.get(name)
        if link is None:
            raise ClusterError(
                f"{name} has no link of its own to ZooKeeper (the primary region's txn and "
                "scheduler nodes do, in clusters made by this version)"
            )
        await link.faults(hold=hold)

    def _region(self, name: str) -> LocalRegion:
        local = self.regions.get(name)
        if local is None:
            known = ", ".join(self.regions) or "none"
            raise ClusterError(f"no region {name!r} with links (non-primary regions: {known})")
        return local

    # -- status ------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        """Every process (role, region, pid, address, leader), how to reach each
        region, and how far each replica is behind the primary."""
        leaders = {role: await self.leader(role) for role in ELECTED_ROLES}
        primary = self.state.region
        processes: list[dict[str, Any]] = []

        def server_entry(name: str, role: str, region: str, server: LocalServer) -> None:
            processes.append(
                {
                    "name": name,
                    "role": role,
                    "region": region,
                    "pid": server.pid,
                    "address": f"127.0.0.1:{server.port}",
                    "leader": None,
                }
            )

        server_entry("postgres", "postgres", primary, self.postgres)
        server_entry("zookeeper", "zookeeper", primary, self.zookeeper)
        server_entry("redis", "redis", primary, self.redis)
        for name, link in self.zookeeper_links.items():
            server_entry(f"link-{name}-zookeeper", "link", primary, link)
        for region in self.regions.values():
            server_entry(f"postgres-{region.name}", "replica", region.name, region.replica)
            server_entry(f"redis-{region.name}", "redis", region.name, region.redis)
            for name, link in region.links.items():
                server_entry(f"link-{region.name}-{name}", "link", region.name, link)
        for service in self.services:
            elected = service.spec.role in ELECTED_ROLES
            processes.append(
                {
                    "name": service.spec.name,
                    "role": service.spec.role,
                    "region": service.spec.region or primary,
                    "pid": service.pid,
                    "address": service.address,
                    "http_port": service.spec.http_port,
                    "leader": (service is leaders[service.spec.role]) if elected else None,
                    "log": str(service.log_file),
                }
            )
        replication: dict[str, Any] = {}
        for region in self.regions.values():
            try:
                status = await region.status(self.postgres.dsn(DATABASE))
            except SynclineError as exc:
                replication[region.name] = {"error": exc.message}
                continue
            replication[region.name] = {
                "applied_ts": status.applied_ts,
                "primary_ts": status.primary_ts,
                "streaming": status.streaming,
                "replay_lag_ms": status.replay_lag_ms,
            }
        return {
            "data_dir": str(self.data_dir),
            "app_dir": self.state.app_dir,
            "running": all(p["pid"] is not None for p in processes),
            "primary_region": primary,
            "gateways": self.gateway_urls,
            "replication": replication,
            "admin_key": self.admin_key(),
            "processes": processes,
        }


def _label(server: LocalServer) -> str:
    return server.name
