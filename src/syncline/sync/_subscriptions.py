"""Shared subscriptions, and the loop that keeps them current.

Identical subscriptions (same path, args, caller and page journal) share one
:class:`SharedQuery`: one execution, one serialised result. The loop advances
in steps: it opens one snapshot, reads the commit log since its last ts,
re-runs only the queries whose read sets intersect the written keys (plus
newly added ones) in that same snapshot, then publishes every result and the
new ts at once, so every session sees all its queries at one ts.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import time
from collections.abc import Set
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from syncline._errors import AppError, SynclineError
from syncline.runtime import HEALTH_FEED, FunctionRunner, Identity, UncaughtFunctionError
from syncline.storage import Storage
from syncline.sync._protocol import dumps
from syncline.telemetry import links_to, publish_span, query_reruns, update_latency
from syncline.txn import Interval, ReadSet, sorted_keys_by_index
from syncline.values import field_boundaries, json_dumps_canonical, to_json

if TYPE_CHECKING:
    from syncline.sync._session import SyncSession

log = logging.getLogger(__name__)

COMMITS_PER_STEP = 10_000
PRESENCE_BATCH_SECONDS = 0.016
"""Presence changes wait up to this long for others to share their re-run (a
display frame: cursors look smooth, and a busy room costs ~60 re-runs a second)."""
STORAGE_RETRY_SECONDS = 0.5
"""Wait before re-running queries that failed because storage was unreachable."""


@dataclass(frozen=True)
class QueryOutcome:
    """A query's result, with its protocol modification body pre-serialised."""

    fingerprint: str
    """Equal fingerprints mean the client already has this result."""
    body: str
    """The modification JSON without its queryId (``{"type":...}`` tail)."""

    def modification(self, query_id: int) -> str:
        return f'{{"queryId":{query_id},{self.body}'


def success_outcome(value: Any, log_lines: list[str], journal: str | None) -> QueryOutcome:
    value_json = dumps(to_json(value))
    body = (
        f'"type":"QueryUpdated","value":{value_json},"logLines":{dumps(log_lines)},'
        f'"journal":{dumps(journal)}}}'
    )
    return QueryOutcome("ok:" + value_json + (journal or ""), body)


def failure_outcome(exc: SynclineError, log_lines: list[str]) -> QueryOutcome:
    message, error_data = error_for_client(exc)
    # errorData is present only for AppError: Convex's clients treat its mere
    # presence (even null) as a ConvexError.
    data = f',"errorData":{dumps(error_data)}' if isinstance(exc, AppError) else ""
    body = (
        f'"type":"QueryFailed","errorMessage":{dumps(message)},"logLines":{dumps(log_lines)}'
        f'{data},"journal":null}}'
    )
    return QueryOutcome("err:" + message + dumps(error_data), body)


def error_for_client(exc: SynclineError) -> tuple[str, Any]:
    """The (errorMessage, errorData) a client receives for a failed function."""
    if isinstance(exc, AppError):
        data = to_json(exc.data)
        return f"Uncaught ConvexError: {json.dumps(data)}", data
    if isinstance(exc, UncaughtFunctionError):
        return exc.message, None
    return f"{exc.code}: {exc.message}", None


QueryKey = tuple[str, str, str, str | None]
Bucket = tuple[int, bytes]


def _buckets(read_set: ReadSet) -> set[Bucket]:
    return {(index_id, interval_bucket(interval)) for index_id, interval in read_set.items()}


def interval_bucket(interval: Interval) -> bytes:
    """The longest run of whole field encodings that every key in the interval starts with.

    Invalidation looks a written key up under each of its field prefixes, so a
    commit only examines queries whose intervals could contain its keys, instead
    of every subscription. Unbounded or first-field ranges land in ``b""``.
    """
    if interval.end is None:
        return b""
    bucket = b""
    for end in field_boundaries(interval.start):
        prefix = interval.start[:end]
        if not interval.end.startswith(prefix):
            break
        bucket = prefix
    return bucket


K = TypeVar("K")


def _reindex(
    index: dict[K, set[SharedQuery]],
    query: SharedQuery,
    old: Set[K],
    new: Set[K],
) -> tuple[list[K], list[K]]:
    """Move ``query`` in ``index`` from keys ``old`` to keys ``new``: the keys that
    lost their last query, and the keys that gained their first."""
    emptied: list[K] = []
    started: list[K] = []
    for key in old - new:
        members = index.get(key)
        if members is not None:
            members.discard(query)
            if not members:
                del index[key]
                emptied.append(key)
    for key in new - old:
        members = index.setdefault(key, set())
        if not members:
            started.append(key)
        members.add(query)
    return emptied, started


@dataclass(eq=False)
class SharedQuery:
    key: QueryKey
    path: str
    args: Any
    identity: Identity
    journal: str | None
    outcome: QueryOutcome | None = None
    read_set: ReadSet = field(default_factory=ReadSet)
    subscribers: set[SyncSession] = field(default_factory=set)
    buckets: set[Bucket] = field(default_factory=set)
    rooms: frozenset[str] = frozenset()
    """Presence rooms it read: a change to one re-runs it."""
    feeds: frozenset[str] = frozenset()
    """System feeds (the cluster's health) it read: a change to one re-runs it."""


@dataclass(frozen=True)
class _Run:
    """One execution of a shared query: its outcome and what it depends on."""

    outcome: QueryOutcome
    read_set: ReadSet
    journal: str | None
    rooms: frozenset[str]
    feeds: frozenset[str]


class ManagerState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


class SubscriptionManager:
    """Keeps every subscribed query's result current as commits land."""

    def __init__(self, storage: Storage, runner: FunctionRunner, *, start_ts: int = 0) -> None:
        self._storage = storage
        self._runner = runner
        self._queries: dict[QueryKey, SharedQuery] = {}
        self._pending: set[SharedQuery] = set()
        self._rerun_all = False
        self._wakeup = asyncio.Event()
        self._ts = start_ts
        self._ts_changed = asyncio.Condition()
        self._waiting: set[SyncSession] = set()
        """Sessions owed a Transition once the ts advances (mutation acks, catch-up)."""
        self._buckets: dict[Bucket, set[SharedQuery]] = {}
        """Queries by the buckets of their read intervals (see :func:`interval_bucket`)."""
        self._rooms: dict[str, set[SharedQuery]] = {}
        """Queries by the presence rooms they read."""
        self._feeds: dict[str, set[SharedQuery]] = {}
        """Queries by the system feeds they read."""
        self._presence_wakeup: asyncio.TimerHandle | None = None
        if runner.presence is not None:
            runner.presence.add_listener(self._rooms_changed)
        if runner.system is not None and runner.system.health is not None:
            runner.system.health.on_change(lambda: self.feed_changed(HEALTH_FEED))
        self.commits_seen = 0
        """Commits this manager has read from the log (a rate, sampled over time)."""
        self._state = ManagerState.NEW
        self._task: asyncio.Task[None] | None = None
        self.steps = 0

    @property
    def ts(self) -> int:
        """Every published result is current as of this ts."""
        return self._ts

    @property
    def query_count(self) -> int:
        return len(self._queries)

    async def start(self) -> None:
        if self._state is ManagerState.NEW:
            self._ts = max(self._ts, await self._storage.max_ts())
            self._state = ManagerState.RUNNING
            self._task = asyncio.create_task(self._run(), name="subscription-loop")

    async def close(self) -> None:
        self._state = ManagerState.CLOSED
        if self._presence_wakeup is not None:
            self._presence_wakeup.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # -- called by sessions and the committer --------------------------------

    def notify_when_advanced(self, session: SyncSession) -> None:
        """Mark ``session`` dirty after the next step that advances the ts."""
        self._waiting.add(session)

    def forget_session(self, session: SyncSession) -> None:
        self._waiting.discard(session)

    def _set_read_set(
        self, query: SharedQuery, read_set: ReadSet, buckets: set[Bucket] | None = None
    ) -> None:
        if buckets is None:
            buckets = _buckets(read_set)
        _reindex(self._buckets, query, query.buckets, buckets)
        query.buckets = buckets
        query.read_set = read_set

    def _set_rooms(self, query: SharedQuery, rooms: frozenset[str]) -> None:
        if rooms == query.rooms:
            return
        dropped, added = _reindex(self._rooms, query, query.rooms, rooms)
        hub = self._runner.presence
        if hub is not None:
            # The node watches a room while any subscription depends on it.
            for room in dropped:
                hub.release(room)
            for room in added:
                hub.retain(room)
        query.rooms = rooms

    def _rooms_changed(self, rooms: set[str]) -> None:
        """Presence rooms changed: re-run the queries that read them in a step at most
        ``PRESENCE_BATCH_SECONDS`` from now. A busy room changes hundreds of times a
        second; one re-run (and one frame per subscriber) per batch serves them all."""
        woken = False
        for room in rooms:
            queries = self._rooms.get(room)
            if queries:
                self._pending |= queries
                woken = True
        if woken and self._presence_wakeup is None:
            self._presence_wakeup = asyncio.get_running_loop().call_later(
                PRESENCE_BATCH_SECONDS, self._wake_for_presence
            )

    def feed_changed(self, feed: str) -> None:
        """A system feed changed: re-run the queries that read it."""
        queries = self._feeds.get(feed)
        if queries:
            self._pending |= queries
            self._wakeup.set()

    def _wake_for_presence(self) -> None:
        self._presence_wakeup = None
        self._wakeup.set()

    def subscribe(
        self, session: SyncSession, path: str, args: Any, identity: Identity, journal: str | None
    ) -> SharedQuery:
        try:
            args_key = json_dumps_canonical(to_json(args))
        except SynclineError:
            args_key = repr(args)
        key: QueryKey = (path, args_key, identity.cache_key, journal)
        query = self._queries.get(key)
        if query is None:
            query = SharedQuery(key, path, args, identity, journal)
            self._queries[key] = query
            self._pending.add(query)
            self._wakeup.set()
        query.subscribers.add(session)
        return query

    def unsubscribe(self, session: SyncSession, query: SharedQuery) -> None:
        query.subscribers.discard(session)
        if not query.subscribers and self._queries.get(query.key) is query:
            del self._queries[query.key]
            self._pending.discard(query)
            self._set_read_set(query, ReadSet())
            self._set_rooms(query, frozenset())
            _reindex(self._feeds, query, query.feeds, frozenset())

    def notify_commit(self, ts: int) -> None:
        """A commit up to ``ts`` is durable; wake the loop."""
        if ts > self._ts:
            self._wakeup.set()

    def rerun_all(self) -> None:
        """New code or catalog: every result may differ."""
        self._rerun_all = True
        self._wakeup.set()

    async def wait_for_ts(self, ts: int, timeout_seconds: float) -> bool:
        """Wait until results are current as of ``ts``; False on timeout."""
        async with self._ts_changed:
            try:
                await asyncio.wait_for(
                    self._ts_changed.wait_for(lambda: self._ts >= ts), timeout_seconds
                )
            except TimeoutError:
                return False
        return True

    # -- the loop ------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            try:
                await self._step()
            except Exception:
                log.exception("subscription step failed; retrying")
                await asyncio.sleep(0.1)
                self._wakeup.set()
            else:
                if self._rerun_all and not self._wakeup.is_set():
                    # A query failed on storage trouble (see _execute): retry it soon,
                    # even if nothing commits, so its error does not outlive the outage.
                    await asyncio.sleep(STORAGE_RETRY_SECONDS)
                    self._wakeup.set()

    async def _step(self) -> None:
        # Let senders flush responses queued before this step (reads below do not yield),
        # and never read through a model whose indexes are being replaced.
        await asyncio.sleep(0)
        await self._runner.wait_for_stable_deployment()
        rerun_all, pending = self._rerun_all, set(self._pending)
        self._rerun_all = False
        self._pending.clear()
        traced: list[str] = []
        try:
            async with self._storage.snapshot() as snapshot:
                target_ts = max(snapshot.ts, self._ts)
                if rerun_all:
                    to_run = set(self._queries.values())
                else:
                    to_run = set(pending)
                    if snapshot.ts > self._ts:
                        invalidated, traced = await self._invalidated(snapshot, self._ts)
                        to_run |= invalidated
                queries = [q for q in to_run if self._queries.get(q.key) is q]
                query_reruns.add(len(queries))
                results = await asyncio.gather(*(self._execute(q, snapshot) for q in queries))
                buckets = [_buckets(result.read_set) for result in results]
        except BaseException:
            # Nothing was published: the next step runs all of this again.
            self._rerun_all = self._rerun_all or rerun_all
            self._pending |= pending
            raise
        # Publish all at once (no await in between): sessions never see a mix of ts.
        changed: set[SharedQuery] = set()
        for query, result, query_buckets in zip(queries, results, buckets, strict=True):
            if self._queries.get(query.key) is not query:
                continue  # unsubscribed while it ran
            self._set_read_set(query, result.read_set, query_buckets)
            self._set_rooms(query, result.rooms)
            _reindex(self._feeds, query, query.feeds, result.feeds)
            query.feeds = result.feeds
            # Re-runs keep the page ends of the first run: pages stay gapless.
            query.journal = result.journal
            outcome = result.outcome
            if query.outcome is None or query.outcome.fingerprint != outcome.fingerprint:
                query.outcome = outcome
                changed.add(query)
        advanced = target_ts > self._ts
        affected: set[SyncSession] = set()
        for query in changed:
            affected |= query.subscribers
        links = links_to(traced) if queries else []
        if links:
            # The step that re-ran and pushed a commit's results links to its trace,
            # on every node, whichever node made the commit.
            publish_span(
                links,
                {
                    "syncline.queries.rerun": len(queries),
                    "syncline.queries.changed": len(changed),
                    "syncline.sessions.updated": len(affected),
                },
            )
        if advanced and changed:
            # Commit ts are wall-clock ns at the txn leader: the age of the newest
            # commit these results reflect, as they go out.
            update_latency.record(max(0.0, time.time() - target_ts / 1e9))
        self._ts = target_ts
        self.steps += 1
        if advanced:
            affected |= self._waiting
            self._waiting = set()
        for session in affected:
            session.mark_dirty()
        async with self._ts_changed:
            self._ts_changed.notify_all()

    async def _invalidated(self, snapshot: Any, since: int) -> tuple[set[SharedQuery], list[str]]:
        """The queries the commits after ``since`` invalidate, and those commits' traces."""
        keys: list[tuple[int, bytes]] = []
        traced: list[str] = []
        cursor = since
        while True:
            commits = await snapshot.commits_after(cursor, limit=COMMITS_PER_STEP)
            self.commits_seen += len(commits)
            for commit in commits:
                keys.extend(commit.keys)
                if commit.traceparent:
                    traced.append(commit.traceparent)
            if len(commits) < COMMITS_PER_STEP:
                break
            cursor = commits[-1].ts
        written = sorted_keys_by_index(keys)
        candidates: set[SharedQuery] = set()
        for index_id, index_keys in written.items():
            for key in index_keys:
                for prefix in (b"", *(key[:end] for end in field_boundaries(key))):
                    members = self._buckets.get((index_id, prefix))
                    if members:
                        candidates |= members
        return {q for q in candidates if q.read_set.overlaps(written)}, traced

    async def _execute(self, query: SharedQuery, snapshot: Any) -> _Run:
        try:
            result = await self._runner.run_query(
                query.path, query.args, query.identity, snapshot=snapshot, journal=query.journal
            )
        except SynclineError as exc:
            # A failed query is re-run when anything it read changes (or on new code).
            return _Run(
                failure_outcome(exc, []),
                getattr(exc, "read_set", None) or ReadSet(),
                query.journal,
                getattr(exc, "rooms", None) or frozenset(),
                getattr(exc, "feeds", None) or frozenset(),
            )
        except Exception:
            # Storage trouble, not the query's fault: report it without internals, and
            # re-run everything shortly (the loop retries after STORAGE_RETRY_SECONDS;
            # the empty read set would otherwise never be invalidated).
            log.exception("running subscription %s failed", query.path)
            self._rerun_all = True
            error = UncaughtFunctionError(
                "Server Error: the query could not run; it will be retried"
            )
            return _Run(
                failure_outcome(error, []), ReadSet(), query.journal, query.rooms, query.feeds
            )
        return _Run(
            success_outcome(result.value, result.log_lines, result.journal),
            result.read_set,
            result.journal or query.journal,
            result.rooms,
            result.feeds,
        )
