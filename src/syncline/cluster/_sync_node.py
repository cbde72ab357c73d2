"""The sync service: runs functions, keeps subscriptions, serves Convex sync sessions.

A sync node reads from its region's PostgreSQL and commits through the txn
leader (:class:`RemoteCommitter`). Its subscription loop wakes on PostgreSQL
NOTIFY (the commit-log trigger); a slow poll of ``max(ts)`` is the fallback for
a notification that never arrived. Either is only a wake-up: each step reads the
commit log, which stays the truth.

Each gRPC ``Sync.Session`` stream carries one client session: every
``ClientFrame.json`` is a Convex sync protocol frame for one
:class:`SyncSession`, and every frame the session sends goes back as a
``ServerFrame``. The stream ending ends the session; the session closing
(FatalError, AuthError) ends the stream with OK; the node shutting down ends it
with UNAVAILABLE, and the client reconnects elsewhere and resends what was not
confirmed (mutations are deduplicated by session and request id).

The node announces itself in ZooKeeper as an ephemeral member of its region,
``{zk_path}/members/{region}/{id}`` holding ``{"address", "region",
"sessions"}``, so gateways can route to it; it registers again after a session
loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import secrets
import socket
import uuid
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from aiohttp import web
from kazoo.client import KazooState
from kazoo.exceptions import KazooException

from syncline._errors import (
    AuthenticationError,
    ConfigError,
    PermissionDeniedError,
    SynclineError,
    UnavailableError,
)
from syncline.admin import SYSTEM_FUNCTIONS, HealthMonitor
from syncline.app import load_app
from syncline.auth import AdminKeys, AuthProvider, RevocationList, TokenVerifier
from syncline.auth._admin import INSTANCE_SECRET_BYTES
from syncline.cluster import _tls as tls
from syncline.cluster._deployments import ClusterDeployments
from syncline.cluster._health import HealthPaths, zk_health_collector
from syncline.cluster._members import publish_ephemeral
from syncline.cluster._mux import serve_sessions
from syncline.cluster._regional_storage import RegionalStorage
from syncline.cluster._remote import RemoteCommitter
from syncline.cluster._service import NodeConfig, start_health_http
from syncline.cluster._sync_servicers import add_sync_servicers
from syncline.cluster._wire import call_from_proto
from syncline.cluster._zk import ZkSession
from syncline.functions import install_print_capture
from syncline.presence import PresenceConfig, PresenceHub, redis_presence
from syncline.ratelimit import (
    DEFAULT_REQUESTS_PER_USER,
    BucketSpec,
    MemoryRateLimiter,
    RateLimiter,
    RedisRateLimiter,
)
from syncline.runtime import Deployment, FunctionRunner, LogFeed, RunnerConfig, SystemServices
from syncline.server import LocalBackend, error_result
from syncline.server._backend import Close, Send
from syncline.storage import CommitNotifier, Storage
from syncline.sync import Authenticator, SubscriptionManager, SyncSession
from syncline.sync._protocol import MAX_FRAME_BYTES
from syncline.telemetry import (
    observe_gauge,
    rate_limit_refusals,
    sessions,
)
from syncline.v1 import syncline_pb2 as pb

log = logging.getLogger(__name__)

_NOTIFICATION_RETRY_SECONDS = 1.0
"""Pause before listening again when the notification stream itself failed."""


@dataclass(frozen=True, kw_only=True)
class SyncConfig(NodeConfig):
    """How one sync node is reached, where it registers, and how it follows commits."""

    region: str = "local"
    """The region this node serves; it registers under it. Non-empty, without ``/``."""
    zk_path: str = "/syncline/sync"
    """Where sync nodes register in ZooKeeper (``{zk_path}/members/{region}/{id}``)."""
    txn_zk_path: str = "/syncline/txn"
    """Where the txn leader announces itself (the txn service's ``zk_path``)."""
    scheduler_zk_path: str = "/syncline/scheduler"
    """Where the scheduler nodes hold their election (for the health view)."""
    poll_interval_seconds: float = 1.0
    """How often (> 0) the commit log's max ts and the catalog version are polled: the
    fallback for a lost notification, and how a schema change reaches idle runners.
    Bounds how stale a subscription can be when NOTIFY fails."""
    membership_interval_seconds: float = 5.0
    """How often (> 0) the membership node's ``sessions`` count is refreshed (and its
    presence checked)."""
    shutdown_grace_seconds: float = 1.0
    """How long (>= 0) ``close`` waits for session streams to end before cancelling them."""
    txn_routes: dict[str, str] = field(default_factory=dict)
    """How this node reaches txn addresses it finds in ZooKeeper, when not directly
    (``{announced: reachable}``: a region's link to the primary region)."""
    commit_timeout_seconds: float = 30.0
    """How long (> 0) a mutation waits for a txn leader before failing as unavailable
    (a failover, or a region cut off from the primary)."""
    revoked_admin_keys_file: Path | None = None
    """Names of revoked admin keys, one per line; read again when it changes."""
    redis_url: str | None = None
    """This region's Redis, for presence rooms (None: ``ctx.presence`` is unavailable)."""
    peer_redis_urls: dict[str, str] = field(default_factory=dict)
    """Other regions' Redis (``{region: url}``): rooms span regions by reading theirs."""
    presence: PresenceConfig = field(default_factory=PresenceConfig)
    client_log_lines: bool = False
    """Whether what functions log reaches every client as Convex ``logLines`` (a
    development or staging cluster). Off, only admin callers and the log tail see it."""
    user_rate: BucketSpec | None = DEFAULT_REQUESTS_PER_USER
    """Function calls a second per signed-in user, counted in ``redis_url`` for every
    sync node together (None: unlimited)."""
    admin_secret: bytes | None = field(default=None, repr=False)
    """The deployment's instance secret (>= 32 bytes), from which admin keys are
    issued and checked; every node of a deployment needs the same one. None: a
    random secret for this node only, so admin keys issued elsewhere fail here."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.region or "/" in self.region:
            raise ConfigError(f"region must be non-empty and contain no '/', got {self.region!r}")
        for name in (
            "poll_interval_seconds",
            "membership_interval_seconds",
            "commit_timeout_seconds",
        ):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.shutdown_grace_seconds < 0:
            raise ConfigError(
                f"shutdown_grace_seconds must be >= 0, got {self.shutdown_grace_seconds}"
            )
        if self.admin_secret is not None and len(self.admin_secret) < INSTANCE_SECRET_BYTES:
            raise ConfigError(f"admin_secret must be at least {INSTANCE_SECRET_BYTES} bytes")


class NodeState(enum.Enum):
    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


class _StreamEnd(enum.Enum):
    SESSION_CLOSED = "session closed"
    NODE_STOPPING = "node stopping"


class SyncNode:
    """One sync service process: runner, subscriptions, gRPC sessions, membership."""

    kind = "sync"

    def __init__(self, config: SyncConfig, storage: Storage) -> None:
        self.config = config
        self.storage = storage
        self.identifier = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self.state = NodeState.NEW
        self.port = config.port
        self.http_port = config.http_port
        self.admin_keys: AdminKeys | None = None
        self.deployments: ClusterDeployments | None = None
        self.runner: FunctionRunner | None = None
        self.manager: SubscriptionManager | None = None
        self.presence: PresenceHub | None = None
        self.health_monitor: HealthMonitor | None = None
        self._log_feed: LogFeed | None = None
        self._limiter: RateLimiter = (
            RedisRateLimiter(config.redis_url) if config.redis_url else MemoryRateLimiter()
        )
        self.registered = False
        """Whether the membership node is believed present in ZooKeeper."""
        self._committer: RemoteCommitter | None = None
        self._verifier: TokenVerifier | None = None
        self._authenticator: Authenticator | None = None
        self._auth_providers: list[AuthProvider] = []
        self._closing: set[asyncio.Future[None]] = set()
        self._calls: LocalBackend | None = None
        self._server: grpc.aio.Server | None = None
        self._http: web.AppRunner | None = None
        self._zk: ZkSession | None = None
        self._membership_wake = asyncio.Event()
        self._streams: dict[SyncSession, asyncio.Future[_StreamEnd]] = {}
        self._mux_streams: set[asyncio.Future[None]] = set()
        """One future per Sessions stream, set when the node stops."""
        self._mux_sessions = 0
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def address(self) -> str:
        """``host:port`` of the gRPC server, as gateways reach it."""
        return f"{self.config.advertise_host or self.config.host}:{self.port}"

    @property
    def member_path(self) -> str:
        """This node's ephemeral membership node in ZooKeeper."""
        return f"{self.config.zk_path.rstrip('/')}/members/{self.config.region}/{self.identifier}"

    @property
    def session_count(self) -> int:
        return len(self._streams) + self._mux_sessions

    @property
    def ready(self) -> bool:
        return self.state is NodeState.RUNNING

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Load the app and catalog, follow commits, serve gRPC, then register."""
        if self.state is not NodeState.NEW:
            return
        self.state = NodeState.STARTING
        try:
            await self._start()
        except BaseException:
            await self.close()
            raise
        self.state = NodeState.RUNNING
        log.info(
            "sync node %s serving gRPC on %s (region %s)",
            self.identifier,
            self.address,
            self.config.region,
        )

    async def _start(self) -> None:
        config = self.config
        install_print_capture()
        app = load_app(config.app_dir)
        secret = config.admin_secret
        if secret is None:
            secret = secrets.token_bytes(INSTANCE_SECRET_BYTES)
            log.warning(
                "no admin secret configured (SYNCLINE_ADMIN_SECRET): using a random one; "
                "admin keys issued by other nodes will not work on this node"
            )
        self.admin_keys = AdminKeys(secret, RevocationList(config.revoked_admin_keys_file))

        await self.storage.open()
        self._committer = RemoteCommitter(
            config.zk_hosts,
            zk_path=config.txn_zk_path,
            routes=config.txn_routes,
            failover_timeout_seconds=config.commit_timeout_seconds,
            tls=config.tls,
        )
        await self._committer.start()
        deployments = self.deployments = ClusterDeployments(self.storage, app)
        await deployments.refresh()
        # The deployed version's auth config (not --app's), replaced on every deploy.
        self._auth_providers = deployments.current.app.auth_providers
        self._verifier = TokenVerifier(self._auth_providers)
        authenticator = self._authenticator = Authenticator(self._verifier, self.admin_keys)
        self.presence = self._presence_hub()
        if self.presence is not None:
            await self.presence.start()
            self._log_feed = LogFeed(self.presence)
        health = self.health_monitor = HealthMonitor(
            mode="cluster",
            collect=zk_health_collector(
                lambda: self._zk,
                HealthPaths(config.zk_path, config.txn_zk_path, config.scheduler_zk_path),
            ),
            commits_seen=lambda: self.manager.commits_seen if self.manager else 0,
            last_commit_ts=lambda: self.manager.ts if self.manager else 0,
        )
        runner = self.runner = FunctionRunner(
            self.storage,
            self._committer,
            deployments,
            config=RunnerConfig(
                unavailable_retry_seconds=config.commit_timeout_seconds,
                client_log_lines=config.client_log_lines,
            ),
            presence=self.presence,
            rate_limiter=self._limiter,
            user_limit=config.user_rate,
            system=SystemServices(
                SYSTEM_FUNCTIONS, "cluster", health, versions=lambda: deployments.versions
            ),
            log_feed=self._log_feed,
        )
        manager = self.manager = SubscriptionManager(self.storage, runner)
        region = {"syncline.region": config.region}
        # Series from the start, for dashboards and alerts.
        for bucket in ("user", "fn"):
            rate_limit_refusals.add(0, {"syncline.ratelimit.bucket": bucket})
        sessions.add(0)
        observe_gauge(
            "syncline.sync.subscriptions",
            "{query}",
            "Distinct subscribed queries this node keeps current",
            lambda: [(float(manager.query_count), region)],
        )
        if isinstance(self.storage, RegionalStorage):
            storage = self.storage
            observe_gauge(
                "syncline.replication.lag",
                "s",
                "How far this region's replica is behind the commits it has been sent",
                lambda: [(storage.lag_seconds, region)],
            )
        self._calls = LocalBackend(
            runner=runner, manager=manager, authenticator=lambda: authenticator
        )
        deployments.on_change(self._catalog_changed)
        await manager.start()
        if isinstance(self.storage, CommitNotifier):
            self._spawn(self._follow_commits(self.storage), "sync-commit-notifications")
        else:
            log.info("storage has no commit notifications; polling only")
        self._spawn(self._poll(), "sync-poll")

        self._server = tls.server(
            config.tls,
            options=[
                # A client frame may be as large as the sync protocol allows.
                ("grpc.max_receive_message_length", MAX_FRAME_BYTES + 1024),
                # Two nodes must never share a port silently.
                ("grpc.so_reuseport", 0),
            ],
        )
        add_sync_servicers(self._server, self)
        self.port = tls.secure_port(self._server, f"{config.host}:{config.port}", config.tls)
        await self._server.start()
        if config.http_port is not None:
            await self._start_http()

        # Register last: gateways only ever see a node that serves.
        self._zk = ZkSession(
            config.zk_hosts, session_timeout_seconds=config.session_timeout_seconds
        )
        self._zk.on_state(self._zk_state_changed)
        await self._zk.start()
        await self._publish_membership()
        self._spawn(self._keep_membership(), "sync-membership")
        await health.start()

    def _presence_hub(self) -> PresenceHub | None:
        config = self.config
        if config.redis_url is None:
            return None
        return redis_presence(
            config.redis_url,
            region=config.region,
            peers=config.peer_redis_urls,
            config=config.presence,
        )

    async def close(self) -> None:
        """Leave the membership, end every session, stop serving, close connections.

        Idempotent. Sessions end with UNAVAILABLE: their clients reconnect to another
        node and resend unconfirmed mutations (deduplicated by request id).
        """
        if self.state in (NodeState.CLOSING, NodeState.CLOSED):
            return
        self.state = NodeState.CLOSING
        # 1. Stop intake: leave the membership (closing the ZooKeeper session removes
        #    the ephemeral node at once), refuse new streams.
        membership = self._tasks.pop("sync-membership", None)
        if membership is not None:
            await _cancel(membership)
        if self.health_monitor is not None:
            await self.health_monitor.close()
        if self._zk is not None:
            await self._zk.close()
            self.registered = False
        # Sessions move to other nodes: their members stay in their rooms (the new
        # node adopts them) rather than leave as the sessions end here.
        if self._log_feed is not None:
            await self._log_feed.close()
        if self.presence is not None:
            await self.presence.close()
        # 2. End the sessions, give their streams a moment to finish, then cancel them.
        for ended in self._streams.values():
            if not ended.done():
                ended.set_result(_StreamEnd.NODE_STOPPING)
        for stopping in self._mux_streams:
            if not stopping.done():
                stopping.set_result(None)
        if self._server is not None:
            await self._server.stop(grace=self.config.shutdown_grace_seconds)
        if self._http is not None:
            await self._http.cleanup()
        # 3. Background work, then connections.
        for name, task in list(self._tasks.items()):
            if not await _cancel(task):
                log.warning("background task %s did not stop within 5 s", name)
        self._tasks.clear()
        if self.manager is not None:
            await self.manager.close()
        await self._limiter.close()
        if self._committer is not None:
            await self._committer.close()
        await self.storage.close()
        if self.deployments is not None:
            self.deployments.close()
        if self._verifier is not None:
            await self._verifier.close()
        await asyncio.gather(*self._closing, return_exceptions=True)
        self.state = NodeState.CLOSED

    async def __aenter__(self) -> SyncNode:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks[name] = task
        task.add_done_callback(_log_failure)

    # -- following commits ---------------------------------------------------------------

    async def _follow_commits(self, notifier: CommitNotifier) -> None:
        """Feed commit notifications to the subscription loop."""
        manager = self.manager
        assert manager is not None
        while True:
            try:
                async with contextlib.aclosing(notifier.commit_notifications()) as commits:
                    async for ts in commits:
                        manager.notify_commit(ts)
            except Exception:
                # The stream reconnects by itself; this is a defect, not an outage.
                log.exception("commit notifications failed; listening again")
            await asyncio.sleep(_NOTIFICATION_RETRY_SECONDS)

    async def _poll(self) -> None:
        """The fallback: a lost notification, or a schema applied by the txn leader."""
        manager, deployments = self.manager, self.deployments
        assert manager is not None and deployments is not None
        while True:
            await asyncio.sleep(self.config.poll_interval_seconds)
            try:
                manager.notify_commit(await self.storage.max_ts())
                if await deployments.stale():
                    await deployments.refresh()
            except SynclineError as exc:
                log.warning("polling the commit log failed: %s", exc.message)

    def _catalog_changed(self, deployment: Deployment) -> None:
        # Results computed through the old catalog may name indexes that changed.
        if self.manager is not None:
            self.manager.rerun_all()
        providers = deployment.app.auth_providers
        if self._authenticator is not None and providers != self._auth_providers:
            log.info("the deployed auth config changed: checking tokens with the new one")
            self._auth_providers = providers
            self._verifier = TokenVerifier(providers)
            previous = self._authenticator.use(self._verifier)
            closing = asyncio.ensure_future(previous.close())
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    # -- sessions ------------------------------------------------------------------------

    async def serve_session(
        self, requests: AsyncIterator[pb.ClientFrame], context: grpc.aio.ServicerContext
    ) -> None:
        """Serve one ``Sync.Session`` stream until either side ends it."""
        manager, runner, authenticator = self.manager, self.runner, self._authenticator
        if self.state is not NodeState.RUNNING or manager is None or runner is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "this sync node is not serving")
            return
        assert authenticator is not None
        ended: asyncio.Future[_StreamEnd] = asyncio.get_running_loop().create_future()

        async def send(frame: str) -> None:
            try:
                await context.write(pb.ServerFrame(json=frame))
            except grpc.aio.BaseError as exc:
                # The stream already finished: the client went away, or the node ended it.
                log.debug("sync stream finished while sending: %r", exc)

        async def close(reason: str) -> None:
            log.debug("sync session closing: %s", reason)
            if not ended.done():
                ended.set_result(_StreamEnd.SESSION_CLOSED)

        async def frames() -> AsyncIterator[str]:
            async for message in requests:
                yield message.json

        session = SyncSession(
            manager=manager, runner=runner, authenticator=authenticator, send=send, close=close
        )
        self._streams[session] = ended
        run = asyncio.create_task(session.run(frames()), name="sync-session")
        try:
            await asyncio.wait((run, ended), return_when=asyncio.FIRST_COMPLETED)
        finally:
            del self._streams[session]
            if not run.done():
                run.cancel()
            await asyncio.wait((run,))
            if not run.cancelled() and run.exception() is not None:
                log.error("sync session failed", exc_info=run.exception())
        if ended.done() and ended.result() is _StreamEnd.NODE_STOPPING:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, "the sync node is shutting down; reconnect"
            )

    async def serve_sessions(
        self, requests: AsyncIterator[pb.SessionFrames], context: grpc.aio.ServicerContext
    ) -> None:
        """Serve one ``Sync.Sessions`` stream (a gateway's sessions) until either side
        ends it; when the node stops, the stream fails so the gateway moves them."""
        manager, runner, authenticator = self.manager, self.runner, self._authenticator
        if self.state is not NodeState.RUNNING or manager is None or runner is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "this sync node is not serving")
            return
        assert authenticator is not None

        def make_session(send: Send, close: Close) -> SyncSession:
            return SyncSession(
                manager=manager, runner=runner, authenticator=authenticator, send=send, close=close
            )

        def count(delta: int) -> None:
            self._mux_sessions += delta

        stopping: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._mux_streams.add(stopping)
        serve = asyncio.create_task(
            serve_sessions(requests, context.write, make_session, count), name="sync-sessions"
        )
        try:
            await asyncio.wait((serve, stopping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._mux_streams.discard(stopping)
            if not serve.done():
                serve.cancel()
            await asyncio.wait((serve,))
        if stopping.done():
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, "the sync node is shutting down; reconnect"
            )

    async def call(self, message: pb.CallRequest) -> pb.CallResponse:
        """One HTTP API call forwarded by a gateway, answered as the embedded server would."""
        if self.state is not NodeState.RUNNING or self._calls is None:
            raise UnavailableError("this sync node is not serving")
        try:
            call = call_from_proto(message)
        except SynclineError as exc:
            result = error_result(exc)
        else:
            result = await self._calls.call(call)
        return pb.CallResponse(http_status=result.status, body_json=result.body)

    async def deploy(self, message: pb.DeployRequest) -> pb.CallResponse:
        """``POST /api/deploy`` forwarded by a gateway: an admin deploys through the txn
        leader; this node loads the new version at once (the others within a poll)."""
        committer, deployments = self._committer, self.deployments
        if self.state is not NodeState.RUNNING or committer is None or deployments is None:
            raise UnavailableError("this sync node is not serving")
        assert self._authenticator is not None
        authorization = message.authorization if message.HasField("authorization") else None
        try:
            identity = await self._authenticator.from_authorization_header(authorization)
            if not identity.admin:
                raise AuthenticationError("deploying needs an admin key ('Convex <admin key>')")
            if not identity.can("deploy"):
                raise PermissionDeniedError("this admin key does not have the deploy scope")
            response = await committer.deploy(message.bundle_json, dry_run=message.dry_run)
        except SynclineError as exc:
            result = error_result(exc)
            return pb.CallResponse(http_status=result.status, body_json=result.body)
        if response.applied:
            await deployments.refresh()
        body = {
            "appVersion": response.app_version,
            "applied": response.applied,
            "changes": json.loads(response.changes_json),
        }
        return pb.CallResponse(http_status=200, body_json=json.dumps(body))

    # -- membership ----------------------------------------------------------------------

    def _zk_state_changed(self, state: str) -> None:
        if state == KazooState.LOST:
            self.registered = False  # the ephemeral node died with the session
        if state == KazooState.CONNECTED:
            self._membership_wake.set()  # a new session needs a new node

    async def _keep_membership(self) -> None:
        zk = self._zk
        assert zk is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._membership_wake.wait(), self.config.membership_interval_seconds
                )
            self._membership_wake.clear()
            await zk.connected.wait()
            try:
                await self._publish_membership()
            except KazooException as exc:
                log.warning("updating the membership node failed (%r); retrying", exc)

    async def _publish_membership(self) -> None:
        """Create the membership node if this session has none; update its data."""
        zk = self._zk
        assert zk is not None
        client, path = zk.client, self.member_path
        data = json.dumps(
            {
                "address": self.address,
                "region": self.config.region,
                "sessions": self.session_count,
                **self._reads(),
            }
        ).encode()
        if await asyncio.to_thread(publish_ephemeral, client, path, data):
            log.info("registered %s as %s", self.address, path)
        self.registered = True

    # -- health --------------------------------------------------------------------------

    async def _start_http(self) -> None:
        self._http = await start_health_http(
            self.config.host,
            self.config.http_port or 0,
            alive=lambda: {"state": self.state.value, **self._reads()},
            ready=lambda: (
                self.ready,
                {
                    "state": self.state.value,
                    "registered": self.registered,
                    "sessions": self.session_count,
                    **self._reads(),
                },
            ),
        )
        self.http_port = int(self._http.addresses[0][1])

    def _reads(self) -> dict[str, Any]:
        """Where reads go, for a node of a region with a replica."""
        if not isinstance(self.storage, RegionalStorage):
            return {}
        return {
            "reads": "primary" if self.storage.on_primary else "replica",
            "replica_lag_seconds": round(self.storage.lag_seconds, 3),
        }

    def health(self) -> pb.HealthResponse:
        return pb.HealthResponse(
            status=pb.HealthResponse.SERVING if self.ready else pb.HealthResponse.NOT_SERVING,
            role=self.kind,
            last_ts=self.manager.ts if self.manager is not None else 0,
        )


async def _cancel(task: asyncio.Task[None], timeout_seconds: float = 5.0) -> bool:
    """Cancel ``task`` and wait for it; False if it did not finish in time."""
    task.cancel()
    done, _ = await asyncio.wait((task,), timeout=timeout_seconds)
    return bool(done)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background task %s failed", task.get_name(), exc_info=task.exception())
