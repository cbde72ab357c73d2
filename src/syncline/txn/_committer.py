"""The committer: OCC validation, ts assignment and group commit.

Callers queue :class:`CommitRequest` s. One loop takes everything queued (up to
``max_batch``), validates each request in order against the recent-write window
(which already holds the earlier requests of the same batch), assigns strictly
increasing ts, writes the whole batch in one storage transaction and only then
answers the callers. While a batch is being made durable the next one fills,
so under load one fsync pays for many commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from syncline._errors import (
    CatalogChangedError,
    FencedError,
    OccConflictError,
    SynclineError,
    UnavailableError,
)
from syncline.storage import CommitEntry, DocumentWrite, IdempotencyRecord, Storage
from syncline.telemetry import (
    commit_batch_duration,
    commit_batch_size,
    context_from,
    occ_conflicts,
    tracer,
)
from syncline.txn._intervals import ReadSet, sorted_keys_by_index
from syncline.txn._window import WriteWindow

log = logging.getLogger(__name__)


@dataclass
class CommitRequest:
    """A transaction ready to commit, read at ``snapshot_ts``."""

    snapshot_ts: int
    read_set: ReadSet
    writes: Sequence[DocumentWrite]
    idempotency_key: str | None = None
    result_json: str = "null"
    """The function's return value, recorded with the idempotency key."""
    catalog_version: int | None = None
    """The catalog the writes' index keys were computed for (None: not checked)."""
    fresh_key: bool = False
    """The sender made ``idempotency_key`` up for this request and never sent it
    before, so no earlier commit can hold it and the committer skips looking."""
    traceparent: str = ""
    """The W3C trace context of the mutation that made it ("" for none)."""


@dataclass(frozen=True)
class CommitOutcome:
    ts: int
    result_json: str
    deduplicated: bool = False


class CommitClient(Protocol):
    """What a function runner commits through: the committer in process, or the
    txn leader over gRPC."""

    async def commit(self, request: CommitRequest) -> CommitOutcome: ...

    async def find_idempotent(self, key: str) -> CommitOutcome | None: ...


class CommitterState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    FENCED = "fenced"
    """Another leader took over: this committer refuses everything from now on."""
    CLOSED = "closed"


@dataclass
class _Pending:
    request: CommitRequest
    future: asyncio.Future[CommitOutcome] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    span: trace.Span = field(default_factory=trace.get_current_span)
    """From arrival to answer, in the trace of the mutation that made the commit."""


@dataclass(frozen=True)
class CommitterConfig:
    max_batch: int = 512
    """Most commits written in one storage transaction."""
    window_seconds: float = 60.0
    """How long written keys stay in the OCC window; older snapshots are refused."""
    recent_idempotency_keys: int = 100_000
    """Request keys remembered in memory (all are also in storage)."""
    check_conflicts: bool = True
    """Refuse commits whose reads were overwritten since their snapshot (OCC). Off
    only to build a deliberately broken server, which ``syncline verify``'s tests
    must catch: without it, mutations are not serializable."""
    deduplicate_requests: bool = True
    """Commit each request key once, answering a retry with the first outcome. Off
    only to build a deliberately broken server: a mutation resent after a dropped
    connection then commits twice."""


class Committer:
    """Serialises commits onto one Storage; the only place ts are assigned."""

    def __init__(
        self,
        storage: Storage,
        *,
        config: CommitterConfig | None = None,
        on_commit: Callable[[int], None] = lambda ts: None,
        on_fenced: Callable[[], None] = lambda: None,
        clock_ns: Callable[[], int] = time.time_ns,
        epoch: int | None = None,
    ) -> None:
        """``epoch``: the leader epoch this committer holds; every batch is checked
        against the stored epoch, so a deposed leader cannot write."""
        self._storage = storage
        self._config = config or CommitterConfig()
        self._on_commit = on_commit
        self._on_fenced = on_fenced
        self._epoch = epoch
        self._clock_ns = clock_ns
        self._queue: list[_Pending] = []
        self._wakeup = asyncio.Event()
        self._exclusive = asyncio.Lock()
        self._state = CommitterState.NEW
        self._task: asyncio.Task[None] | None = None
        self._last_ts = 0
        self._window = WriteWindow(0)
        self._recent: OrderedDict[str, CommitOutcome] = OrderedDict()
        self._catalog_version = 0
        self._in_flight: list[_Pending] = []

    @property
    def last_ts(self) -> int:
        return self._last_ts

    @property
    def epoch(self) -> int | None:
        """The leader epoch this committer writes under (None: unfenced, embedded)."""
        return self._epoch

    async def start(self) -> None:
        if self._state is not CommitterState.NEW:
            return
        self._last_ts = await self._storage.max_ts()
        self._window = WriteWindow(self._last_ts)
        self._state = CommitterState.RUNNING
        self._task = asyncio.create_task(self._run(), name="committer")

    async def close(self, *, drain_timeout_seconds: float = 10.0) -> None:
        """Stop intake, let queued and in-flight batches finish, then stop."""
        if self._state is CommitterState.CLOSED:
            return
        self._state = CommitterState.CLOSED
        if self._task is not None:
            self._wakeup.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), drain_timeout_seconds)
            except TimeoutError:
                log.error("committer did not drain in %.1f s; cancelling", drain_timeout_seconds)
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
                for pending in self._in_flight:
                    _answer(
                        pending,
                        SynclineError(
                            "the server shut down while this commit was being written; "
                            "its outcome is unknown (a retry with the same request is safe)"
                        ),
                    )
        for pending in self._queue:
            _answer(pending, SynclineError("the committer is shutting down"))
        self._queue.clear()

    async def __aenter__(self) -> Committer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def commit(self, request: CommitRequest) -> CommitOutcome:
        """Commit, or raise OccConflictError; returns the first outcome for a retried key."""
        return await self.submit(request)

    def submit(self, request: CommitRequest) -> asyncio.Future[CommitOutcome]:
        """Queue a commit; the future holds what ``commit`` would return or raise.

        For callers that hand over many requests at once without a task each.
        """
        if self._state is CommitterState.FENCED:
            raise FencedError("this committer was deposed by a newer leader")
        if self._state is not CommitterState.RUNNING:
            raise SynclineError("the committer is not running")
        # A key that already committed is answered from the batch (see _commit_batch).
        span = tracer.start_span(
            "txn commit", context=context_from(request.traceparent), kind=SpanKind.SERVER
        )
        pending = _Pending(request, span=span)
        self._queue.append(pending)
        self._wakeup.set()
        return pending.future

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """Hold off commits (for catalog changes such as an index backfill)."""
        async with self._exclusive:
            yield

    def set_catalog_version(self, version: int) -> None:
        """Call while holding ``exclusive()``: commits computed for an older catalog
        (its indexes) are refused as retryable conflicts and re-run on the new one."""
        self._catalog_version = version

    def next_ts(self) -> int:
        """A ts above every committed one: ``max(now, last + 1)``."""
        return max(self._clock_ns(), self._last_ts + 1)

    async def find_idempotent(self, key: str) -> CommitOutcome | None:
        """The outcome recorded for a request key, if that request committed."""
        if not self._config.deduplicate_requests:
            return None
        outcome = self._recent.get(key)
        if outcome is not None:
            return CommitOutcome(outcome.ts, outcome.result_json, deduplicated=True)
        found = await self._storage.find_idempotent(key)
        if found is None:
            return None
        return CommitOutcome(found[0], found[1], deduplicated=True)

    async def _run(self) -> None:
        while self._state is CommitterState.RUNNING or (
            self._state is CommitterState.CLOSED and self._queue
        ):
            if not self._queue:
                await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                batch = self._queue[: self._config.max_batch]
                del self._queue[: len(batch)]
                self._in_flight = batch
                try:
                    async with self._exclusive:
                        await self._commit_batch(batch)
                except Exception as exc:
                    # Never let one bad batch stop every later commit.
                    log.error("committer batch failed: %r", exc)
                    for pending in batch:
                        _answer(pending, _outcome_unknown())

    async def _commit_batch(self, batch: list[_Pending]) -> None:
        accepted: list[tuple[_Pending, CommitEntry]] = []
        keys_in_batch: dict[str, CommitOutcome] = {}
        # Answered only once the first request with their key is durable.
        duplicates: list[tuple[_Pending, str]] = []
        # Keys that committed earlier (a retry; possibly under a previous leader), found
        # with one storage round trip for the whole batch.
        deduplicate = self._config.deduplicate_requests
        unknown = [
            p.request.idempotency_key
            for p in batch
            if deduplicate
            and p.request.idempotency_key is not None
            and not p.request.fresh_key
            and p.request.idempotency_key not in self._recent
        ]
        stored = await self._storage.find_idempotent_many(unknown) if unknown else {}
        for pending in batch:
            request = pending.request
            key = request.idempotency_key if deduplicate else None
            if key is not None and key in keys_in_batch:
                duplicates.append((pending, key))
                continue
            if key is not None:
                earlier = self._recent.get(key)
                found = stored.get(key)
                if earlier is None and found is not None:
                    earlier = CommitOutcome(found[0], found[1])
                if earlier is not None:
                    _answer(pending, CommitOutcome(earlier.ts, earlier.result_json, True))
                    continue
            if (
                request.catalog_version is not None
                and request.catalog_version != self._catalog_version
            ):
                _answer(pending, CatalogChangedError("the tables or indexes changed while it ran"))
                continue
            conflict = (
                self._window.check(request.snapshot_ts, request.read_set)
                if self._config.check_conflicts
                else None
            )
            if conflict is not None:
                occ_conflicts.add(1)
                _answer(pending, OccConflictError(conflict.reason))
                continue
            ts = self.next_ts()
            self._last_ts = ts
            written = [k for w in request.writes for k in w.written_keys()]
            self._window.add(ts, sorted_keys_by_index(written))
            record = IdempotencyRecord(key, request.result_json) if key is not None else None
            accepted.append(
                (pending, CommitEntry(ts, tuple(request.writes), record, request.traceparent))
            )
            if key is not None:
                keys_in_batch[key] = CommitOutcome(ts, request.result_json)
        if not accepted:
            return
        started = time.perf_counter()
        writes = [_storage_span(p.span, self._storage, len(accepted)) for p, _ in accepted]
        try:
            try:
                await self._storage.write_batch([entry for _, entry in accepted], epoch=self._epoch)
            finally:
                for span in writes:
                    span.end()
        except FencedError as exc:
            # Deposed: nothing of the batch was written, and nothing more will be.
            self._state = CommitterState.FENCED
            log.warning("committer fenced: %s", exc.message)
            for pending in [p for p, _ in accepted] + [p for p, _ in duplicates]:
                _answer(pending, FencedError("this committer was deposed; retry on the new leader"))
            for pending in self._queue:
                _answer(pending, FencedError("this committer was deposed; retry on the new leader"))
            self._queue.clear()
            self._on_fenced()
            return
        except Exception as exc:
            # The storage failed mid-write (e.g. PostgreSQL restarted): the batch may
            # or may not have landed. Its ts are never reused and its keys stay in the
            # window; callers retry with the same idempotency keys, which return the
            # first outcome if it did land.
            log.error("commit batch of %d failed: %r", len(accepted), exc)
            for pending in [p for p, _ in accepted] + [p for p, _ in duplicates]:
                _answer(pending, _outcome_unknown())
            return
        commit_batch_duration.record(time.perf_counter() - started)
        commit_batch_size.record(len(accepted))
        for pending, entry in accepted:
            outcome = CommitOutcome(entry.ts, pending.request.result_json)
            if entry.idempotency is not None:
                self._remember(entry.idempotency.key, outcome)
            _answer(pending, outcome)
        for pending, key in duplicates:
            first = keys_in_batch[key]
            _answer(pending, CommitOutcome(first.ts, first.result_json, True))
        self._window.trim_before(self._last_ts - int(self._config.window_seconds * 1e9))
        self._on_commit(self._last_ts)

    def _remember(self, key: str, outcome: CommitOutcome) -> None:
        self._recent[key] = outcome
        while len(self._recent) > self._config.recent_idempotency_keys:
            self._recent.popitem(last=False)


def _answer(pending: _Pending, result: CommitOutcome | BaseException) -> None:
    if isinstance(result, BaseException):
        pending.span.set_status(Status(StatusCode.ERROR, type(result).__name__))
    else:
        pending.span.set_attribute("syncline.commit.ts", result.ts)
    pending.span.end()
    # A caller that was cancelled no longer waits; answering it would raise
    # InvalidStateError and kill the commit loop.
    if pending.future.done():
        return
    if isinstance(result, BaseException):
        pending.future.set_exception(result)
    else:
        pending.future.set_result(result)


def _storage_span(parent: trace.Span, storage: Storage, batch: int) -> trace.Span:
    """A commit's share of its batch's write: one span per commit, all alike."""
    system = "postgresql" if "Postgres" in type(storage).__name__ else "sqlite"
    return tracer.start_span(
        f"{system} write batch",
        context=trace.set_span_in_context(parent),
        kind=SpanKind.CLIENT,
        attributes={"db.system.name": system, "syncline.batch.size": batch},
    )


def _outcome_unknown() -> UnavailableError:
    return UnavailableError(
        "storage failed while the commit was being written; its outcome is unknown "
        "(retrying with the same request is safe)"
    )
