"""The embedded server: every component in one process over SQLite.

Storage, committer, deployment, runner and subscription loop are the same
objects the cluster services compose; here they share one event loop, and the
committer wakes the subscription loop directly instead of through NOTIFY.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from syncline.admin import SYSTEM_FUNCTIONS, SYSTEM_TABLES, HealthMonitor
from syncline.app import App, AppBundle, load_app
from syncline.auth import (
    REVOKED_KEYS_FILENAME,
    AdminKeys,
    RevocationList,
    TokenVerifier,
    load_or_create_instance_secret,
)
from syncline.functions import install_print_capture
from syncline.presence import MemoryStore, PresenceConfig, PresenceHub
from syncline.ratelimit import ClientLimits, MemoryRateLimiter
from syncline.runtime import (
    Deployment,
    DeploymentManager,
    FunctionRunner,
    LogFeed,
    SystemServices,
    VersionRecord,
    describe_version,
    load_versions,
    record_version,
)
from syncline.scheduler import JobScheduler, SchedulerConfig
from syncline.server._backend import LocalBackend
from syncline.server._http import HttpApi
from syncline.storage import SqliteStorage
from syncline.sync import Authenticator, SubscriptionManager
from syncline.txn import Committer, CommitterConfig

log = logging.getLogger(__name__)

DEFAULT_PORT = 3210


@dataclass(frozen=True)
class EmbeddedConfig:
    app_dir: Path
    """The app: schema.py, function modules, optional auth_config.py."""
    data_dir: Path
    """Where the SQLite database and the instance secret live."""
    host: str = "127.0.0.1"
    """Interface to listen on."""
    port: int = DEFAULT_PORT
    """TCP port; 0 picks a free one."""
    commit_log_retention_seconds: float = 3600.0
    """Commit-log rows older than this are deleted (the subscription loop only reads
    rows after its own ts, which is never older than a few milliseconds)."""
    idempotency_retention_seconds: float = 86400.0
    """How long a retried mutation (same session and request id) is recognised."""
    prune_interval_seconds: float = 60.0
    """How often old commit-log rows and request keys are deleted."""
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    """Running scheduled functions and crons."""
    presence: PresenceConfig = field(default_factory=PresenceConfig)
    """Presence rooms, held in this process."""
    committer: CommitterConfig = field(default_factory=CommitterConfig)
    """How commits are batched and checked."""
    client_limits: ClientLimits = field(default_factory=ClientLimits.off)
    """Rate limits per client address and user (none by default: a development
    server's clients all come from one machine)."""


class ServerState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


class EmbeddedServer:
    """``syncline dev``: serve one app from one process."""

    def __init__(self, config: EmbeddedConfig) -> None:
        self.config = config
        self._state = ServerState.NEW
        self.storage = SqliteStorage(config.data_dir / "syncline.sqlite3")
        self.manager: SubscriptionManager | None = None
        self.committer = Committer(self.storage, config=config.committer, on_commit=self._on_commit)
        self.deployments = DeploymentManager(
            self.storage, self.committer, system_tables=SYSTEM_TABLES
        )
        self.presence = PresenceHub(
            MemoryStore(config.presence.messages_kept), config=config.presence
        )
        self.rate_limiter = MemoryRateLimiter()
        self.health = HealthMonitor(
            mode="embedded",
            collect=self._collect_health,
            commits_seen=lambda: self.manager.commits_seen if self.manager else 0,
            last_commit_ts=lambda: self.manager.ts if self.manager else 0,
        )
        self.log_feed = LogFeed(self.presence)
        self._versions: tuple[VersionRecord, ...] = ()
        self.runner = FunctionRunner(
            self.storage,
            self.committer,
            self.deployments,
            presence=self.presence,
            rate_limiter=self.rate_limiter,
            user_limit=config.client_limits.requests_per_user,
            system=SystemServices(
                SYSTEM_FUNCTIONS, "embedded", self.health, versions=lambda: self._versions
            ),
            log_feed=self.log_feed,
        )
        self.scheduler = JobScheduler(self.storage, self.runner, config=config.scheduler)
        self.admin_keys: AdminKeys | None = None
        self._verifier: TokenVerifier | None = None
        self._authenticator: Authenticator | None = None
        self._http: HttpApi | None = None
        self._site_runner: web.AppRunner | None = None
        self._pruner: asyncio.Task[None] | None = None
        self.port = config.port

    def _on_commit(self, ts: int) -> None:
        if self.manager is not None:
            self.manager.notify_commit(ts)
        self.scheduler.notify_commit(ts)

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    @property
    def admin_key(self) -> str:
        assert self.admin_keys is not None
        return self.admin_keys.issue()

    async def _collect_health(self) -> dict[str, Any]:
        """One process is the whole deployment: one region, one node, no leaders."""
        node = {
            "id": "embedded",
            "role": "embedded",
            "address": f"{self.config.host}:{self.port}",
            "sessions": float(self._http.connection_count if self._http else 0),
        }
        region = {"name": "local", "primary": True, "replicationLagSeconds": None}
        return {"regions": [{**region, "nodes": [node]}], "leaders": []}

    def _get_authenticator(self) -> Authenticator:
        assert self._authenticator is not None
        return self._authenticator

    async def start(self) -> None:
        if self._state is not ServerState.NEW:
            return
        install_print_capture()
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        self.admin_keys = AdminKeys(
            load_or_create_instance_secret(self.config.data_dir),
            RevocationList(self.config.data_dir / REVOKED_KEYS_FILENAME),
        )
        await self.storage.open()
        try:
            await self.presence.start()
            await self.committer.start()
            self._versions = await load_versions(self.storage)
            self.manager = SubscriptionManager(self.storage, self.runner)
            self.deployments.on_change(self._deployment_changed)
            await self.deploy(load_app(self.config.app_dir))
            await self.manager.start()
            await self.scheduler.start()
            self._http = HttpApi(
                LocalBackend(
                    runner=self.runner, manager=self.manager, authenticator=self._get_authenticator
                ),
                limits=self.config.client_limits,
                limiter=self.rate_limiter,
            )
            self._site_runner = web.AppRunner(
                self._http.application(), access_log=None, handle_signals=False
            )
            await self._site_runner.setup()
            site = web.TCPSite(self._site_runner, self.config.host, self.config.port)
            await site.start()
            self.port = int(self._site_runner.addresses[0][1])
            self._pruner = asyncio.create_task(self._prune_forever(), name="storage-pruner")
            await self.health.start()
        except BaseException:
            await self.close()
            raise
        self._state = ServerState.RUNNING

    async def deploy(self, app: App) -> Deployment:
        """Make a new version of the app live (schema checked, indexes backfilled)."""
        # Numbered on from the versions this data directory has run before.
        version = self._versions[-1].version + 1 if self._versions else 1
        deployment = await self.deployments.apply(app, version=version)
        digest = AppBundle.from_directory(app.directory).digest
        self._versions = await record_version(self.storage, describe_version(version, app, digest))
        # One authenticator for the server's life: live sessions check their next
        # token with the new version's auth config too.
        self._verifier = TokenVerifier(app.auth_providers)
        if self._authenticator is None:
            assert self.admin_keys is not None
            self._authenticator = Authenticator(self._verifier, self.admin_keys)
        else:
            await self._authenticator.use(self._verifier).close()
        return deployment

    async def _prune_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.prune_interval_seconds)
            await self.prune()

    async def prune(self) -> int:
        """Delete commit-log rows and request keys past their retention."""
        assert self.manager is not None
        now_ns = time.time_ns()
        try:
            return await self.storage.prune(
                # Never past the subscription loop's position: it still reads after it.
                commit_log_before_ts=min(
                    now_ns - int(self.config.commit_log_retention_seconds * 1e9), self.manager.ts
                ),
                idempotency_before_ts=now_ns - int(self.config.idempotency_retention_seconds * 1e9),
            )
        except Exception:
            log.exception("pruning old commit-log rows failed; will retry")
            return 0

    def _deployment_changed(self, deployment: Deployment) -> None:
        if self.manager is not None:
            self.manager.rerun_all()
        self.scheduler.deployment_changed(deployment)

    async def close(self) -> None:
        if self._state is ServerState.CLOSED:
            return
        self._state = ServerState.CLOSED
        await self.health.close()
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner
        if self._http is not None:
            await self._http.close_sockets()
        if self._site_runner is not None:
            await self._site_runner.cleanup()
        await self.scheduler.close()
        if self.manager is not None:
            await self.manager.close()
        await self.log_feed.close()
        await self.presence.close()
        await self.committer.close()
        await self.storage.close()
        if self._verifier is not None:
            await self._verifier.close()

    async def __aenter__(self) -> EmbeddedServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
