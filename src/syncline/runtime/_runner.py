"""Running functions: argument checks, execution, OCC retries, error shaping.

Queries run against one snapshot (their own, or the subscription loop's).
Mutations run against a fresh snapshot and commit through the committer;
on an OCC conflict they re-run, up to ``max_occ_retries`` times, with jittered
backoff. Actions run outside any transaction and call back in through ctx.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from syncline._errors import (
    CatalogChangedError,
    FunctionNotFoundError,
    FunctionTypeError,
    OccConflictError,
    SynclineError,
    UnavailableError,
    ValidationError,
)
from syncline.database import (
    DatabaseReader,
    DatabaseWriter,
    PaginationJournal,
    Transaction,
)
from syncline.functions import (
    FunctionKind,
    FunctionSpec,
    Visibility,
    capture_log_lines,
    check_args,
    check_returns,
    in_function_call,
    resolve_reference,
)
from syncline.jobs import ActionScheduler, MutationScheduler, TransactionBody
from syncline.presence import PresenceHub, PresenceReader, PresenceWriter, member_id_of
from syncline.ratelimit import BucketSpec, FunctionRateLimiter, RateLimiter, check
from syncline.runtime._context import (
    ActionCtx,
    Auth,
    Identity,
    MutationCtx,
    QueryCtx,
    SystemMutationCtx,
    SystemQueryCtx,
)
from syncline.runtime._deadline import PausableDeadline, too_long
from syncline.runtime._deployment import Deployment, DeploymentSource
from syncline.runtime._log_feed import LogFeed, failure_text
from syncline.runtime._results import (
    ActionResult,
    MutationResult,
    QueryResult,
    RunnerConfig,
    UncaughtFunctionError,
)
from syncline.runtime._system import SystemServices, is_system_path
from syncline.storage import DeferredSnapshot, Snapshot, Storage
from syncline.telemetry import current_traceparent, recorded_call
from syncline.txn import CommitClient, CommitRequest
from syncline.values import from_json, to_json

log = logging.getLogger(__name__)

MAX_ACTION_DEPTH = 8


def _admin_may_call(identity: Identity, kind: FunctionKind) -> bool:
    """Internal functions: any with the ``run`` scope, queries with ``read`` too."""
    return identity.can("run") or (kind is FunctionKind.QUERY and identity.can("read"))


def _feeds_of(ctx: QueryCtx) -> frozenset[str]:
    return frozenset(ctx.feeds) if isinstance(ctx, SystemQueryCtx) else frozenset()


def _request_id() -> str:
    return secrets.token_hex(8)


class FunctionRunner:
    """Executes the live deployment's functions."""

    def __init__(
        self,
        storage: Storage,
        committer: CommitClient,
        deployments: DeploymentSource,
        *,
        config: RunnerConfig | None = None,
        clock_ms: Callable[[], float] = lambda: time.time() * 1000.0,
        presence: PresenceHub | None = None,
        rate_limiter: RateLimiter | None = None,
        user_limit: BucketSpec | None = None,
        system: SystemServices | None = None,
        log_feed: LogFeed | None = None,
    ) -> None:
        """``rate_limiter`` holds the buckets of ``ctx.rate_limiter`` and of
        ``user_limit``, the calls a signed-in user may make (see :meth:`admit`).
        ``system``: the system functions admins may call here (None: none).
        ``log_feed``: where calls' log lines and failures go for the log tail."""
        self._storage = storage
        self._committer = committer
        self._deployments = deployments
        self._config = config or RunnerConfig()
        self._clock_ms = clock_ms
        self._presence = presence
        self._rate_limiter = rate_limiter
        self._user_limit = user_limit
        self.system = system
        self._log_feed = log_feed

    @property
    def presence(self) -> PresenceHub | None:
        """Where ``ctx.presence`` reads and writes rooms (None: nowhere)."""
        return self._presence

    async def admit(self, identity: Identity) -> None:
        """Count a client's function call against its user's limit; raises
        ``RateLimitedError`` past it. Anonymous callers are limited by address."""
        if identity.user is None or self._rate_limiter is None:
            return
        user = identity.user.token_identifier
        await check(self._rate_limiter, f"user:{user}", self._user_limit, "this user")

    @property
    def current_deployment(self) -> Deployment:
        """The live version functions run against."""
        return self._deployments.current

    # -- lookup --------------------------------------------------------------

    def resolve(
        self,
        ref: object,
        kind: FunctionKind,
        identity: Identity,
        *,
        from_function: bool,
        trusted: bool = False,
    ) -> tuple[Deployment, FunctionSpec]:
        """``trusted``: Syncline itself calls (a scheduled job, or a system function
        calling another), so system functions are allowed."""
        deployment = self._deployments.current
        path = resolve_reference(ref)
        spec = self._lookup(deployment, path)
        allowed = spec is not None and (
            trusted or self._may_call(spec, identity, from_function=from_function)
        )
        if spec is None or not allowed:
            # Internal functions look exactly like missing ones to clients.
            raise FunctionNotFoundError(f"Could not find public function for '{path}'")
        if spec.kind is not kind:
            raise FunctionTypeError(
                f"'{path}' is a {spec.kind.value}, not a {kind.value}; call it as a "
                f"{spec.kind.value}"
            )
        return deployment, spec

    async def wait_for_stable_deployment(self) -> None:
        """Before opening a snapshot that functions will read through the live model."""
        await self._deployments.wait_stable()

    def kind_of(self, ref: object, identity: Identity) -> FunctionKind:
        """The kind of a function the caller may call (for ``/api/function``)."""
        path = resolve_reference(ref)
        spec = self._lookup(self._deployments.current, path)
        if spec is None or not self._may_call(spec, identity, from_function=False):
            raise FunctionNotFoundError(f"Could not find public function for '{path}'")
        return spec.kind

    def function_spec(self, path: str) -> FunctionSpec | None:
        """The live function at ``path`` (a system function's too), if there is one."""
        return self._lookup(self._deployments.current, path)

    def _lookup(self, deployment: Deployment, path: str) -> FunctionSpec | None:
        if is_system_path(path):
            return self.system.functions.get(path) if self.system is not None else None
        return deployment.app.functions.get(path)

    @staticmethod
    def _may_call(spec: FunctionSpec, identity: Identity, *, from_function: bool) -> bool:
        if spec.path is not None and is_system_path(spec.path):
            # Only an admin key reaches system functions; never other functions.
            return not from_function and _admin_may_call(identity, spec.kind)
        return (
            from_function
            or spec.visibility is Visibility.PUBLIC
            or _admin_may_call(identity, spec.kind)
        )

    def _schedulable(self, deployment: Deployment, path: str) -> Mapping[str, FunctionSpec]:
        """What a function at ``path`` may schedule: the app's functions, and a system
        function also Syncline's own."""
        if self.system is not None and is_system_path(path):
            return {**deployment.app.functions, **self.system.functions}
        return deployment.app.functions

    def _lines_for(self, identity: Identity, lines: list[str]) -> list[str]:
        """The log lines ``identity`` may see in its response."""
        return lines if self._config.client_log_lines or identity.admin else []

    def record_logs(
        self, path: str, kind: FunctionKind, lines: list[str], error: SynclineError | None = None
    ) -> None:
        """Hand a call's log lines (and failure) to the log tail; system calls are the
        dashboard's own and stay out of it. The runner does this for the calls it
        starts; the scheduler, which runs job mutations in transactions of its own,
        calls it for those."""
        if self._log_feed is not None and not is_system_path(path):
            text = None if error is None else failure_text(error)
            self._log_feed.record(path, kind.value, lines, text)

    @staticmethod
    def _check_args(deployment: Deployment, spec: FunctionSpec, args: object) -> dict[str, Any]:
        return check_args(spec, args, id_table=deployment.model.id_table_name)

    @staticmethod
    def _check_result(deployment: Deployment, spec: FunctionSpec, value: object) -> None:
        check_returns(spec, value, id_table=deployment.model.id_table_name)

    async def _invoke(
        self,
        spec: FunctionSpec,
        ctx: object,
        args: dict[str, Any],
        *,
        tx: Transaction | None = None,
    ) -> Any:
        """Run the handler; a query or mutation (``tx``) within the execution time
        limit, not counting its waits for storage."""
        limit = self._config.max_execution_seconds
        if tx is None or limit is None:
            return await self._call(spec, ctx, args)
        started = time.monotonic()
        try:
            async with asyncio.timeout(limit) as deadline:
                tx.io_clock = PausableDeadline(deadline)
                value = await self._call(spec, ctx, args)
        except TimeoutError:
            raise too_long(spec, limit) from None
        finally:
            tx.io_clock = None
        # Code that never awaits cannot be interrupted; it still fails afterwards.
        if time.monotonic() - started - tx.io_seconds > limit:
            raise too_long(spec, limit)
        return value

    async def _call(self, spec: FunctionSpec, ctx: object, args: dict[str, Any]) -> Any:
        try:
            return await spec.handler(ctx, **args)
        except SynclineError:
            raise
        except BaseException as exc:
            task = asyncio.current_task()
            if isinstance(exc, asyncio.CancelledError) and task is not None and task.cancelling():
                raise  # the caller is being cancelled: not the function's doing
            # Anything else user code raises (even CancelledError or SystemExit) is
            # the function failing, never the server stopping.
            request_id = _request_id()
            log.error("[Request ID: %s] %s failed", request_id, spec.path, exc_info=exc)
            raise UncaughtFunctionError(f"[Request ID: {request_id}] Server Error") from exc

    # -- queries -------------------------------------------------------------

    async def run_query(
        self,
        ref: object,
        args: object,
        identity: Identity,
        *,
        snapshot: Snapshot | None = None,
        journal: str | None = None,
        from_function: bool = False,
    ) -> QueryResult:
        # A client's one-off query is a call; a subscription's re-run is counted apart.
        with recorded_call("query", record=snapshot is None and not from_function) as call:
            if snapshot is None:
                await self._deployments.wait_stable()
            deployment, spec = self.resolve(
                ref, FunctionKind.QUERY, identity, from_function=from_function
            )
            call["syncline.function.path"] = str(spec.path)
            checked = self._check_args(deployment, spec, args)
            if snapshot is not None:
                return await self._query_in(snapshot, deployment, spec, checked, identity, journal)
            async with self._storage.snapshot() as own:
                return await self._query_in(own, deployment, spec, checked, identity, journal)

    async def _query_in(
        self,
        snapshot: Snapshot,
        deployment: Deployment,
        spec: FunctionSpec,
        args: dict[str, Any],
        identity: Identity,
        journal: str | None,
    ) -> QueryResult:
        tx = Transaction(
            snapshot, deployment.model, read_only=True, limits=self._config.transaction_limits
        )
        pages = PaginationJournal(journal)
        auth = Auth(identity)
        assert spec.path is not None
        ctx: QueryCtx
        if is_system_path(spec.path) and self.system is not None:
            presence = PresenceReader(self._presence, system=True)
            ctx = SystemQueryCtx(
                DatabaseReader(tx, pages),
                auth,
                presence,
                deployment=deployment,
                services=self.system,
            )
        else:
            presence = PresenceReader(self._presence)
            ctx = QueryCtx(DatabaseReader(tx, pages), auth, presence)
        lines: list[str] = []
        # A query an action runs shares the action's lines: the action reports them.
        top_level = not in_function_call()
        try:
            with capture_log_lines(spec.path) as lines:
                value = await self._invoke(spec, ctx, args, tx=tx)
            self._check_result(deployment, spec, value)
        except SynclineError as exc:
            # A subscription to a failing query must still re-run when what it read changes.
            exc.read_set = tx.reads  # type: ignore[attr-defined]
            exc.rooms = frozenset(presence.rooms)  # type: ignore[attr-defined]
            exc.feeds = _feeds_of(ctx)  # type: ignore[attr-defined]
            if top_level:
                self.record_logs(spec.path, FunctionKind.QUERY, lines, exc)
            raise
        if top_level:
            self.record_logs(spec.path, FunctionKind.QUERY, lines)
        return QueryResult(
            value,
            snapshot.ts,
            tx.reads,
            pages.serialize(),
            self._lines_for(identity, lines),
            auth.read,
            frozenset(presence.rooms),
            _feeds_of(ctx),
        )

    async def run_query_internal(self, ref: object, args: Any, identity: Identity) -> QueryResult:
        return await self.run_query(ref, args, identity, from_function=True)

    # -- mutations -----------------------------------------------------------

    async def run_mutation(
        self,
        ref: object,
        args: object,
        identity: Identity,
        *,
        idempotency_key: str | None = None,
        fresh_key: bool = False,
        from_function: bool = False,
        parent_job_id: str | None = None,
        session_id: str | None = None,
        trusted: bool = False,
    ) -> MutationResult:
        """``fresh_key``: the caller knows ``idempotency_key`` was never sent before
        (a request id above every earlier one, on a session's first connection), so
        no earlier commit can hold it and nobody looks.

        ``session_id``: the client session calling, which ``ctx.presence`` joins
        rooms as. Presence changes apply once the mutation has committed.
        """
        with recorded_call("mutation", record=not from_function) as call:
            deployment, spec = self.resolve(
                ref, FunctionKind.MUTATION, identity, from_function=from_function, trusted=trusted
            )
            call["syncline.function.path"] = str(spec.path)
            if idempotency_key is not None and not fresh_key:
                earlier = await self._committer.find_idempotent(idempotency_key)
                if earlier is not None:
                    return MutationResult(
                        from_json(json.loads(earlier.result_json)),
                        earlier.ts,
                        [],
                        deduplicated=True,
                    )
            checked = self._check_args(deployment, spec, args)
            assert spec.path is not None
            path = spec.path
            lines: list[str] = []
            presence = self.presence_writer(session_id)
            limiter = FunctionRateLimiter(self._rate_limiter)

            async def body(tx: Transaction, live: Deployment) -> Any:
                nonlocal presence
                # Each attempt starts over: only the committed one's changes apply.
                presence = self.presence_writer(session_id)
                limiter.new_attempt()
                value, lines[:] = await self.execute_mutation(
                    tx,
                    live,
                    path,
                    checked,
                    identity,
                    checked_for=spec,
                    parent_job_id=parent_job_id,
                    presence=presence,
                    rate_limiter=limiter,
                )
                return value

            try:
                result = await self.transact(
                    body, idempotency_key=idempotency_key, fresh_key=fresh_key, what=path
                )
            except SynclineError as exc:
                if not from_function:
                    self.record_logs(path, FunctionKind.MUTATION, lines, exc)
                raise
            result.log_lines = self._lines_for(identity, lines)
            if not from_function:
                self.record_logs(path, FunctionKind.MUTATION, lines)
            if not result.deduplicated:
                await self.apply_presence(presence)
            return result

    def presence_writer(self, session_id: str | None = None) -> PresenceWriter:
        """``ctx.presence`` for one attempt of a mutation called by ``session_id``
        (None: no session, so it may only broadcast)."""
        member = None if session_id is None else member_id_of(session_id)
        return PresenceWriter(self._presence, member, self._clock_ms)

    async def apply_presence(self, writer: PresenceWriter) -> None:
        """Apply what a committed mutation did to presence rooms."""
        if writer.ops and self._presence is not None:
            await self._presence.apply(writer.ops)

    async def execute_mutation(
        self,
        tx: Transaction,
        deployment: Deployment,
        path: str,
        args: object,
        identity: Identity,
        *,
        checked_for: FunctionSpec | None = None,
        parent_job_id: str | None = None,
        presence: PresenceWriter | None = None,
        rate_limiter: FunctionRateLimiter | None = None,
    ) -> tuple[Any, list[str]]:
        """Run mutation ``path`` of ``deployment`` inside ``tx``: its value and log lines.

        ``args`` are checked against the function unless they already were against
        ``checked_for`` and that is still the live function. ``presence`` collects
        the mutation's presence changes for the caller to apply after the commit
        (without it, ``ctx.presence`` is unavailable).
        """
        spec = self._lookup(deployment, path)
        if spec is None or spec.kind is not FunctionKind.MUTATION:
            raise FunctionNotFoundError(f"Could not find public function for '{path}'")
        if spec is not checked_for:
            args = self._check_args(deployment, spec, args)
        assert isinstance(args, dict)
        db = DatabaseWriter(
            tx,
            PaginationJournal(),
            ensure_table=self._deployments.ensure_table,
            now_ms=self._clock_ms,
        )
        scheduler = MutationScheduler(
            tx,
            self._schedulable(deployment, path),
            now_ms=self._clock_ms,
            limits=self._config.jobs,
            parent_job_id=parent_job_id,
        )
        if presence is None:
            presence = PresenceWriter(None, None, self._clock_ms)  # no presence here
        if rate_limiter is None:
            rate_limiter = FunctionRateLimiter(self._rate_limiter)
        ctx: MutationCtx
        if is_system_path(path):
            ctx = SystemMutationCtx(
                db, Auth(identity), scheduler, presence, rate_limiter, deployment=deployment, tx=tx
            )
        else:
            ctx = MutationCtx(db, Auth(identity), scheduler, presence, rate_limiter)
        with capture_log_lines(path) as lines:
            value = await self._invoke(spec, ctx, args, tx=tx)
        self._check_result(deployment, spec, value)
        return value, lines

    async def transact(
        self,
        body: Callable[[Transaction, Deployment], Awaitable[Any]],
        *,
        idempotency_key: str | None = None,
        fresh_key: bool = False,
        what: str = "transaction",
    ) -> MutationResult:
        """Run ``body`` in a transaction and commit it, re-running it on OCC conflicts
        and while the committer is unavailable; its return value is the result.

        With ``idempotency_key``, a transaction that already committed under that key
        is not applied again: the first result comes back, marked deduplicated.
        """
        # Every attempt carries a request key, so retrying a commit whose outcome is
        # unknown (storage failed mid-write) can never apply it twice.
        key = idempotency_key or f"run|{uuid.uuid4().hex}"
        backoff = self._config.occ_backoff_seconds
        conflicts = 0
        unavailable_until = time.monotonic() + self._config.unavailable_retry_seconds
        attempts = 0
        while True:
            attempts += 1
            try:
                return await self._attempt(
                    body,
                    key,
                    # Only the first attempt's key is surely unsent: a retry may
                    # follow a commit whose outcome was unknown.
                    fresh_key=(idempotency_key is None or fresh_key) and attempts == 1,
                )
            except OccConflictError as exc:
                if isinstance(exc, CatalogChangedError):
                    await self._deployments.refresh()
                conflicts += 1
                if conflicts > self._config.max_occ_retries:
                    raise OccConflictError(
                        f"{what}: gave up after {conflicts} attempts; documents it reads "
                        "are being changed concurrently (OCC conflict)"
                    ) from None
            except UnavailableError:
                if time.monotonic() > unavailable_until:
                    raise
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, 0.2)

    async def _attempt(
        self,
        body: Callable[[Transaction, Deployment], Awaitable[Any]],
        idempotency_key: str,
        *,
        fresh_key: bool,
    ) -> MutationResult:
        # The deployment may have changed since the first attempt: use the live one.
        await self._deployments.wait_stable()
        deployment = self._deployments.current
        # Opened at the first read: a transaction that only writes needs no snapshot.
        snapshot = DeferredSnapshot(self._storage, before_open=self._deployments.wait_stable)
        async with snapshot:
            # ensure_table may swap tx.model mid-run; the commit is checked against
            # the catalog the transaction started with.
            catalog_version = deployment.model.catalog_version
            tx = Transaction(
                snapshot,
                deployment.model,
                read_only=False,
                limits=self._config.transaction_limits,
            )
            value = await body(tx, deployment)
            writes = tx.document_writes()
            # A commit that read nothing is valid at any snapshot (see WriteWindow).
            snapshot_ts = snapshot.ts if snapshot.opened else 0
            if tx.read_ts is not None:
                snapshot_ts = min(snapshot_ts, tx.read_ts) if snapshot_ts else tx.read_ts
        result_json = json.dumps(to_json(value), separators=(",", ":"))
        if not writes:
            # Nothing to commit, and re-running it (a resent request) changes nothing
            # either. One that read nothing (a presence update) observed no ts at all.
            return MutationResult(value, snapshot_ts, [])
        outcome = await self._committer.commit(
            CommitRequest(
                snapshot_ts,
                tx.reads,
                writes,
                idempotency_key,
                result_json,
                catalog_version,
                # A key never sent before: no earlier commit can hold it.
                fresh_key=fresh_key,
                traceparent=current_traceparent(),
            )
        )
        if outcome.deduplicated:
            value = from_json(json.loads(outcome.result_json))
        return MutationResult(value, outcome.ts, [], outcome.deduplicated)

    async def run_mutation_internal(
        self,
        ref: object,
        args: Any,
        identity: Identity,
        *,
        parent_job_id: str | None = None,
        trusted: bool = False,
    ) -> MutationResult:
        return await self.run_mutation(
            ref, args, identity, from_function=True, parent_job_id=parent_job_id, trusted=trusted
        )

    # -- actions -------------------------------------------------------------

    async def run_action(
        self,
        ref: object,
        args: object,
        identity: Identity,
        *,
        from_function: bool = False,
        depth: int = 0,
        parent_job_id: str | None = None,
        trusted: bool = False,
    ) -> ActionResult:
        """``parent_job_id``: the scheduled job this action runs for (or runs within)."""
        with recorded_call("action", record=not from_function) as call:
            deployment, spec = self.resolve(
                ref, FunctionKind.ACTION, identity, from_function=from_function, trusted=trusted
            )
            call["syncline.function.path"] = str(spec.path)
            if depth > MAX_ACTION_DEPTH:
                raise ValidationError(f"actions may nest at most {MAX_ACTION_DEPTH} deep")
            checked = self._check_args(deployment, spec, args)
            assert spec.path is not None
            scheduler = ActionScheduler(
                self._transact_for_scheduler,
                now_ms=self._clock_ms,
                limits=self._config.jobs,
                parent_job_id=parent_job_id,
            )
            ctx = ActionCtx(
                self,
                identity,
                depth,
                scheduler,
                parent_job_id,
                FunctionRateLimiter(self._rate_limiter),
                # A system action may call system functions; an app's may not.
                trusted=is_system_path(spec.path),
            )
            lines: list[str] = []
            try:
                with capture_log_lines(spec.path) as lines:
                    value = await self._invoke(spec, ctx, checked)
                self._check_result(deployment, spec, value)
            except SynclineError as exc:
                if not from_function or trusted:
                    self.record_logs(spec.path, FunctionKind.ACTION, lines, exc)
                raise
            # A scheduled action (trusted) is a call of its own, as a client's is.
            if not from_function or trusted:
                self.record_logs(spec.path, FunctionKind.ACTION, lines)
            return ActionResult(value, self._lines_for(identity, lines))

    async def _transact_for_scheduler(self, body: TransactionBody[Any]) -> Any:
        async def run(tx: Transaction, deployment: Deployment) -> Any:
            return await body(tx, deployment.app.functions)

        result = await self.transact(run, what="ctx.scheduler")
        return result.value

    async def run_action_internal(
        self,
        ref: object,
        args: Any,
        identity: Identity,
        *,
        depth: int,
        parent_job_id: str | None = None,
        trusted: bool = False,
    ) -> ActionResult:
        return await self.run_action(
            ref,
            args,
            identity,
            from_function=True,
            depth=depth,
            parent_job_id=parent_job_id,
            trusted=trusted,
        )
