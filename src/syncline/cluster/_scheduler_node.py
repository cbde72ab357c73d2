"""The scheduler service: one elected scheduler runs every scheduled function and cron.

Standbys wait in the ZooKeeper election. The leader follows the deployed code
and the commit log as a sync node does (NOTIFY to wake, a poll as fallback),
runs jobs through the same runner, and commits through the txn leader. Losing
its ZooKeeper session deposes it: it stops starting jobs at once. A deposed
scheduler that has not noticed yet is harmless: every job changes state in a
transaction that conflicts with the new leader's, so nothing runs twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import socket
import statistics
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import grpc
from aiohttp import web

from syncline._errors import ConfigError, SynclineError
from syncline.admin import SYSTEM_FUNCTIONS
from syncline.app import load_app
from syncline.cluster import _tls as tls
from syncline.cluster._deployments import ClusterDeployments
from syncline.cluster._election import LeaderElection
from syncline.cluster._remote import RemoteCommitter
from syncline.cluster._service import NodeConfig, start_health_http
from syncline.functions import install_print_capture
from syncline.presence import PresenceHub, redis_presence
from syncline.ratelimit import RedisRateLimiter
from syncline.runtime import FunctionRunner, LogFeed, SystemServices
from syncline.scheduler import JobScheduler, SchedulerConfig
from syncline.storage import CommitNotifier, Storage
from syncline.telemetry import observe_gauge
from syncline.v1 import syncline_pb2 as pb
from syncline.v1 import syncline_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class SchedulerNodeConfig(NodeConfig):
    """A scheduler node: the common node settings, its election and the scheduler's."""

    zk_path: str = "/syncline/scheduler"
    """Where the scheduler election and leader announcement live in ZooKeeper."""
    txn_zk_path: str = "/syncline/txn"
    """Where the txn leader announces itself."""
    poll_interval_seconds: float = 1.0
    """How often (> 0) a lost commit notification and a newly deployed version are looked for."""
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    redis_url: str | None = None
    """The region's Redis, for what scheduled functions do to presence rooms and
    rate limits (None: those fail in scheduled functions)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.poll_interval_seconds > 0:
            raise ConfigError(
                f"poll_interval_seconds must be > 0, got {self.poll_interval_seconds}"
            )
        if self.scheduler.max_concurrent_jobs < 1:
            raise ConfigError("max_concurrent_jobs must be >= 1")


class Role(enum.Enum):
    STARTING = "starting"
    STANDBY = "standby"
    LEADER = "leader"
    STOPPED = "stopped"


class SchedulerNode:
    """One scheduler service process."""

    kind = "scheduler"

    def __init__(self, config: SchedulerNodeConfig, storage: Storage) -> None:
        self.config = config
        self.storage = storage
        self.identifier = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self.role = Role.STARTING
        self.port = config.port
        self.scheduler: JobScheduler | None = None
        """The running scheduler while this node leads."""
        self._runner: FunctionRunner | None = None
        self._presence: PresenceHub | None = None
        self._log_feed: LogFeed | None = None
        self._limiter: RedisRateLimiter | None = None
        self._deployments: ClusterDeployments | None = None
        self._committer: RemoteCommitter | None = None
        self._election = LeaderElection(
            config.zk_hosts,
            config.zk_path,
            self.identifier,
            session_timeout_seconds=config.session_timeout_seconds,
        )
        self._stop = asyncio.Event()
        self._server: grpc.aio.Server | None = None
        self._http: web.AppRunner | None = None
        self._election_task: asyncio.Task[None] | None = None
        self._leader_tasks: list[asyncio.Task[None]] = []

    @property
    def address(self) -> str:
        return f"{self.config.advertise_host or self.config.host}:{self.port}"

    async def start(self) -> None:
        install_print_capture()
        app = load_app(self.config.app_dir)
        await self.storage.open()
        self._committer = RemoteCommitter(
            self.config.zk_hosts, zk_path=self.config.txn_zk_path, tls=self.config.tls
        )
        await self._committer.start()
        self._deployments = ClusterDeployments(self.storage, app)
        await self._deployments.refresh()
        redis_url = self.config.redis_url
        if redis_url is not None:
            self._presence = redis_presence(redis_url, region="scheduler")
            await self._presence.start()
            # Scheduled functions' lines and failures reach the admin log tail too.
            self._log_feed = LogFeed(self._presence)
            self._limiter = RedisRateLimiter(redis_url)
        self._runner = FunctionRunner(
            self.storage,
            self._committer,
            self._deployments,
            presence=self._presence,
            rate_limiter=self._limiter,
            # Jobs the system functions scheduled (the verification app's) run here.
            system=SystemServices(SYSTEM_FUNCTIONS, "cluster"),
            log_feed=self._log_feed,
        )
        observe_gauge(
            "syncline.election.leader",
            "1",
            "1 while this node leads its service, else 0",
            lambda: [(1.0 if self.role is Role.LEADER else 0.0, {"syncline.service": "scheduler"})],
        )
        observe_gauge(
            "syncline.scheduler.queue.depth",
            "{job}",
            "Due jobs not yet started, as the active scheduler's last scan saw them (one page)",
            lambda: [(float(self.scheduler.stats.due_backlog if self.scheduler else 0), {})],
        )
        observe_gauge(
            "syncline.scheduler.jobs.running",
            "{job}",
            "Scheduled functions running now on this node",
            lambda: [(float(self.scheduler.running if self.scheduler else 0), {})],
        )
        self._server = tls.server(self.config.tls)
        pb_grpc.add_HealthServicer_to_server(_HealthServicer(self), self._server)
        self.port = tls.secure_port(
            self._server, f"{self.config.host}:{self.config.port}", self.config.tls
        )
        await self._server.start()
        if self.config.http_port is not None:
            self._http = await start_health_http(
                self.config.host, self.config.http_port, alive=self.status, ready=self._ready
            )
        self.role = Role.STANDBY
        self._election_task = asyncio.create_task(
            self._election.run(self._on_elected, self._on_deposed, self._stop),
            name="scheduler-election",
        )
        log.info("scheduler node %s standing by on %s", self.identifier, self.address)

    async def close(self) -> None:
        """Stop contending (a running scheduler drains first), then stop serving."""
        if self.role is Role.STOPPED:
            return
        self._stop.set()
        if self._election_task is not None:
            await self._election_task
        if self._server is not None:
            await self._server.stop(grace=1.0)
        if self._http is not None:
            await self._http.cleanup()
        if self._committer is not None:
            await self._committer.close()
        if self._deployments is not None:
            self._deployments.close()
        if self._log_feed is not None:
            await self._log_feed.close()
        if self._presence is not None:
            await self._presence.close()
        if self._limiter is not None:
            await self._limiter.close()
        await self.storage.close()
        self.role = Role.STOPPED

    async def __aenter__(self) -> SchedulerNode:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- leadership ----------------------------------------------------------------------

    async def _on_elected(self) -> None:
        runner, deployments = self._runner, self._deployments
        assert runner is not None and deployments is not None
        await deployments.refresh()
        scheduler = JobScheduler(self.storage, runner, config=self.config.scheduler)
        deployments.on_change(scheduler.deployment_changed)
        await scheduler.start()
        self.scheduler = scheduler
        if isinstance(self.storage, CommitNotifier):
            self._spawn(self._follow_commits(self.storage, scheduler))
        self._spawn(self._poll(scheduler, deployments))
        self.role = Role.LEADER
        await self._election.announce({"address": self.address, "id": self.identifier})
        log.info("scheduler node %s is the active scheduler", self.identifier)

    async def _on_deposed(self) -> None:
        scheduler, self.scheduler = self.scheduler, None
        for task in self._leader_tasks:
            task.cancel()
        await asyncio.gather(*self._leader_tasks, return_exceptions=True)
        self._leader_tasks.clear()
        if not self._stop.is_set():
            self.role = Role.STANDBY
        if scheduler is not None:
            log.warning("scheduler node %s stepping down", self.identifier)
            if self._deployments is not None:
                self._deployments.remove_listener(scheduler.deployment_changed)
            await scheduler.close()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._leader_tasks.append(asyncio.create_task(coro))

    async def _follow_commits(self, notifier: CommitNotifier, scheduler: JobScheduler) -> None:
        while True:
            try:
                async with contextlib.aclosing(notifier.commit_notifications()) as commits:
                    async for ts in commits:
                        scheduler.notify_commit(ts)
            except Exception:
                log.exception("commit notifications failed; listening again")
            await asyncio.sleep(self.config.poll_interval_seconds)

    async def _poll(self, scheduler: JobScheduler, deployments: ClusterDeployments) -> None:
        """The fallback for a lost notification, and how a new deployment is noticed."""
        while True:
            await asyncio.sleep(self.config.poll_interval_seconds)
            try:
                if await deployments.stale():
                    await deployments.refresh()
                scheduler.wake()
            except SynclineError as exc:
                log.warning("looking for a new deployment failed: %s", exc.message)

    # -- health ----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Role, and while leading: running jobs, counters and recent lateness."""
        body: dict[str, Any] = {"role": self.role.value, "id": self.identifier}
        scheduler = self.scheduler
        if scheduler is not None:
            lateness = sorted(scheduler.lateness_ms)
            body["running"] = scheduler.running
            body["stats"] = scheduler.stats.as_dict()
            if len(lateness) >= 2:
                cuts = statistics.quantiles(lateness, n=100)
                body["lateness_ms"] = {"p50": cuts[49], "p99": cuts[98]}
        return body

    def _ready(self) -> tuple[bool, dict[str, Any]]:
        # Standbys are ready too: they take no traffic, and must not hold up a rollout.
        return self.role in (Role.STANDBY, Role.LEADER), self.status()


class _HealthServicer(pb_grpc.HealthServicer):  # type: ignore[misc]
    def __init__(self, node: SchedulerNode) -> None:
        self._node = node

    async def Check(
        self, request: pb.HealthRequest, context: grpc.aio.ServicerContext
    ) -> pb.HealthResponse:
        leader = self._node.role is Role.LEADER
        return pb.HealthResponse(
            status=pb.HealthResponse.SERVING if leader else pb.HealthResponse.NOT_SERVING,
            role=self._node.role.value,
        )
