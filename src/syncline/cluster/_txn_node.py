"""The txn service: the leader-elected committer behind gRPC ``Txn.CommitBatch``.

Every node contends for leadership in ZooKeeper. The leader takes a new epoch
in PostgreSQL (which waits for any batch of the previous leader still in
flight), starts its committer above the highest committed ts, applies the
app's schema, and only then announces its address. Standbys answer
FAILED_PRECONDITION, so callers look up the leader again. A leader whose
ZooKeeper session is suspended or lost, or whose batch is fenced by a newer
epoch, stops committing at once.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import shutil
import socket
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from aiohttp import web

from syncline._errors import (
    ConfigError,
    FencedError,
    InvalidWriteSetError,
    SchemaError,
    SynclineError,
    UnavailableError,
)
from syncline.admin import SYSTEM_TABLES
from syncline.app import App, AppBundle, app_changes, load_app
from syncline.cluster import _tls as tls
from syncline.cluster._code import load_stored_bundle, store_bundle
from syncline.cluster._election import LeaderElection
from syncline.cluster._service import NodeConfig, start_health_http
from syncline.cluster._validate import validate_commit
from syncline.cluster._wire import (
    TXN_GRPC_OPTIONS,
    outcome_to_proto,
    request_from_proto,
    response_to_proto,
)
from syncline.database import DataModel
from syncline.runtime import DeploymentManager, describe_version, record_version
from syncline.storage import Storage
from syncline.telemetry import observe_gauge, occ_conflicts
from syncline.txn import CommitOutcome, Committer, CommitterConfig
from syncline.v1 import syncline_pb2 as pb
from syncline.v1 import syncline_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class TxnConfig(NodeConfig):
    """A txn node: the common node settings, plus its election and committer."""

    zk_path: str = "/syncline/txn"
    """Where the election and the leader announcement live in ZooKeeper."""
    committer: CommitterConfig = field(default_factory=CommitterConfig)
    """Group commit and OCC window settings."""
    drain_timeout_seconds: float = 5.0
    """How long a deposed or stopping leader waits for its in-flight batch."""


class Role(enum.Enum):
    STARTING = "starting"
    STANDBY = "standby"
    LEADER = "leader"
    STOPPED = "stopped"


class TxnNode:
    """One txn service process: storage, election, committer, gRPC and HTTP servers."""

    kind = "txn"

    def __init__(self, config: TxnConfig, storage: Storage) -> None:
        self.config = config
        self.storage = storage
        self.identifier = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self.role = Role.STARTING
        self.epoch = 0
        self.port = config.port
        self._app: App | None = None
        """The app as started (``--app``): used until a version is deployed."""
        self._code: tuple[AppBundle, App] | None = None
        """The live code while leading."""
        self._app_version = 0
        self._code_dir: Path | None = None
        self._deployments: DeploymentManager | None = None
        self._deploying = asyncio.Lock()
        self._committer: Committer | None = None
        self._model: DataModel | None = None
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

    @property
    def address(self) -> str:
        return f"{self.config.advertise_host or self.config.host}:{self.port}"

    @property
    def last_ts(self) -> int:
        return self._committer.last_ts if self._committer is not None else 0

    async def start(self) -> None:
        self._app = load_app(self.config.app_dir)
        self._code_dir = Path(tempfile.mkdtemp(prefix="syncline-txn-code-"))
        await self.storage.open()
        occ_conflicts.add(0)  # a series from the start, for dashboards and alerts
        observe_gauge(
            "syncline.election.leader",
            "1",
            "1 while this node leads its service, else 0",
            lambda: [(1.0 if self.role is Role.LEADER else 0.0, {"syncline.service": "txn"})],
        )
        self._server = tls.server(self.config.tls, options=TXN_GRPC_OPTIONS)
        pb_grpc.add_TxnServicer_to_server(_TxnServicer(self), self._server)
        pb_grpc.add_HealthServicer_to_server(_HealthServicer(self), self._server)
        self.port = tls.secure_port(
            self._server, f"{self.config.host}:{self.config.port}", self.config.tls
        )
        await self._server.start()
        if self.config.http_port is not None:
            await self._start_http()
        self.role = Role.STANDBY
        self._election_task = asyncio.create_task(
            self._election.run(self._on_elected, self._on_deposed, self._stop),
            name="txn-election",
        )
        log.info("txn node %s serving gRPC on %s", self.identifier, self.address)

    async def close(self) -> None:
        """Stop contending, drain the committer, stop serving, close storage."""
        if self.role is Role.STOPPED:
            return
        self._stop.set()
        if self._election_task is not None:
            await self._election_task
        if self._server is not None:
            await self._server.stop(grace=1.0)
        if self._http is not None:
            await self._http.cleanup()
        await self.storage.close()
        if self._code_dir is not None:
            shutil.rmtree(self._code_dir, ignore_errors=True)
        self.role = Role.STOPPED

    async def _on_elected(self) -> None:
        assert self._app is not None
        started = time.monotonic()
        log.info("txn node %s won the election; taking over", self.identifier)
        self.epoch = await self.storage.acquire_epoch()
        committer = Committer(
            self.storage,
            config=self.config.committer,
            epoch=self.epoch,
            on_fenced=self._election.step_down,
        )
        await committer.start()
        deployments = DeploymentManager(self.storage, committer, system_tables=SYSTEM_TABLES)
        # The deployed version, if any, not --app: a new leader never rolls code back.
        self._code = await self._stored_code()
        deployment = await deployments.apply(self._code[1])
        self._deployments = deployments
        self._model = deployment.model
        self._committer = committer
        self.role = Role.LEADER
        await self._election.announce(
            {"address": self.address, "epoch": self.epoch, "id": self.identifier}
        )
        log.info(
            "txn node %s is the leader (epoch %d, ts above %d; took over in %.0f ms)",
            self.identifier,
            self.epoch,
            committer.last_ts,
            (time.monotonic() - started) * 1000,
        )

    async def _stored_code(self) -> tuple[AppBundle, App]:
        assert self._app is not None and self._code_dir is not None
        stored = await load_stored_bundle(self.storage)
        if stored is None:
            self._app_version = 0
            return AppBundle.from_directory(self.config.app_dir), self._app
        self._app_version, bundle = stored
        return bundle, bundle.load(self._code_dir)

    async def _on_deposed(self) -> None:
        committer, self._committer, self._model = self._committer, None, None
        self._deployments = None
        self.role = Role.STANDBY if not self._stop.is_set() else self.role
        if committer is not None:
            log.warning("txn node %s stepping down (epoch %d)", self.identifier, self.epoch)
            await committer.close(drain_timeout_seconds=self.config.drain_timeout_seconds)

    async def _start_http(self) -> None:
        assert self.config.http_port is not None
        self._http = await start_health_http(
            self.config.host,
            self.config.http_port,
            alive=lambda: {"role": self.role.value},
            ready=lambda: (
                self.role is Role.LEADER,
                {"role": self.role.value, "epoch": self.epoch},
            ),
        )

    async def commit_batch(self, message: pb.CommitBatchRequest) -> pb.CommitBatchResponse:
        """Validate and commit each request on its own; answers in request order.

        Raises _NotLeader (the whole call fails) when this node does not lead.
        """
        committer, model = self._committer, self._model
        if committer is None or model is None:
            raise _NotLeader(f"{self.identifier} is not the leader")
        results: list[CommitOutcome | SynclineError | asyncio.Future[CommitOutcome]] = []
        for request_message in message.requests:
            try:
                request = request_from_proto(request_message)
                validate_commit(request, model)
                results.append(committer.submit(request))
            except SynclineError as exc:
                results.append(exc)
        futures = [result for result in results if isinstance(result, asyncio.Future)]
        if futures:
            try:
                await asyncio.wait(futures)
            except asyncio.CancelledError:
                # The caller gave up (its deadline passed): the commits still finish,
                # and it learns their outcome by retrying with the same keys.
                for future in futures:
                    future.add_done_callback(_outcome_unheard)
                raise
        return pb.CommitBatchResponse(
            responses=[response_to_proto(_settled(result)) for result in results]
        )

    async def deploy(self, bundle_json: str, *, dry_run: bool) -> pb.DeployResponse:
        """Load, check and apply a new version of the app; ConfigError (or a schema
        error) names what is wrong, and then nothing changed."""
        async with self._deploying:
            deployments, code = self._deployments, self._code
            if deployments is None or code is None or self._code_dir is None:
                raise _NotLeader(f"{self.identifier} is not the leader")
            bundle = AppBundle.from_json(bundle_json)
            app = bundle.load(self._code_dir)
            changes = app_changes(code, (bundle, app), await self.storage.load_catalog())
            version = self._app_version + 1
            if not dry_run:
                deployment = await deployments.apply(app)
                await store_bundle(self.storage, version, bundle, epoch=self.epoch)
                await record_version(
                    self.storage,
                    describe_version(version, app, bundle.digest),
                    epoch=self.epoch,
                )
                self._app_version, self._code = version, (bundle, app)
                self._model = deployment.model
                log.info("deployed app version %d (%s)", version, bundle.digest[:12])
            return pb.DeployResponse(
                app_version=version if not dry_run else self._app_version + 1,
                changes_json=json.dumps(changes),
                applied=not dry_run,
            )

    async def find_commit(self, key: str) -> pb.FindCommitResponse:
        committer = self._committer
        if committer is None:
            raise _NotLeader(f"{self.identifier} is not the leader")
        outcome = await committer.find_idempotent(key)
        if outcome is None:
            return pb.FindCommitResponse()
        return pb.FindCommitResponse(committed=outcome_to_proto(outcome))


def _outcome_unheard(future: asyncio.Future[CommitOutcome]) -> None:
    """Mark a commit's outcome as seen, so asyncio does not log it as lost."""
    if not future.cancelled():
        future.exception()


def _settled(
    result: CommitOutcome | SynclineError | asyncio.Future[CommitOutcome],
) -> CommitOutcome | SynclineError:
    if not isinstance(result, asyncio.Future):
        return result
    error = result.exception()
    if error is None:
        return result.result()
    if isinstance(error, SynclineError):
        if not error.retryable:
            log.error("commit failed: %s", error.message)
        return error
    log.error("commit failed", exc_info=error)
    return SynclineError("the commit failed inside the txn service; see its log")


class _NotLeader(SynclineError):
    code = "NotLeader"
    retryable = True


_STATUS_BY_ERROR: list[tuple[type[SynclineError], grpc.StatusCode]] = [
    (InvalidWriteSetError, grpc.StatusCode.INVALID_ARGUMENT),
    (ConfigError, grpc.StatusCode.INVALID_ARGUMENT),
    (SchemaError, grpc.StatusCode.INVALID_ARGUMENT),
    (_NotLeader, grpc.StatusCode.FAILED_PRECONDITION),
    (FencedError, grpc.StatusCode.UNAVAILABLE),
    (UnavailableError, grpc.StatusCode.UNAVAILABLE),
]


def _status_for(exc: SynclineError) -> grpc.StatusCode:
    for error_type, status in _STATUS_BY_ERROR:
        if isinstance(exc, error_type):
            return status
    return grpc.StatusCode.INTERNAL


class _TxnServicer(pb_grpc.TxnServicer):  # type: ignore[misc]
    def __init__(self, node: TxnNode) -> None:
        self._node = node

    async def CommitBatch(
        self, request: pb.CommitBatchRequest, context: grpc.aio.ServicerContext
    ) -> pb.CommitBatchResponse:
        try:
            return await self._node.commit_batch(request)
        except SynclineError as exc:
            error = exc
        await context.abort(_status_for(error), f"{error.code}: {error.message}")
        raise AssertionError("unreachable")

    async def Deploy(
        self, request: pb.DeployRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeployResponse:
        try:
            return await self._node.deploy(request.bundle_json, dry_run=request.dry_run)
        except SynclineError as exc:
            error = exc
        details = getattr(error, "details", "")
        message = f"{error.code}: {error.message}" + (f"\n{details}" if details else "")
        await context.abort(_status_for(error), message)
        raise AssertionError("unreachable")

    async def FindCommit(
        self, request: pb.FindCommitRequest, context: grpc.aio.ServicerContext
    ) -> pb.FindCommitResponse:
        try:
            return await self._node.find_commit(request.idempotency_key)
        except SynclineError as exc:
            error = exc
        await context.abort(_status_for(error), f"{error.code}: {error.message}")
        raise AssertionError("unreachable")


class _HealthServicer(pb_grpc.HealthServicer):  # type: ignore[misc]
    def __init__(self, node: TxnNode) -> None:
        self._node = node

    async def Check(
        self, request: pb.HealthRequest, context: grpc.aio.ServicerContext
    ) -> pb.HealthResponse:
        node = self._node
        leader = node.role is Role.LEADER
        return pb.HealthResponse(
            status=pb.HealthResponse.SERVING if leader else pb.HealthResponse.NOT_SERVING,
            role=node.role.value,
            epoch=node.epoch if leader else 0,
            last_ts=node.last_ts,
        )
