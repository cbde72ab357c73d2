"""The scheduler: finds due jobs and crons and runs them, many at a time.

It sleeps until the earliest pending job or cron is due, or until a commit
writes to the job tables (a job scheduled sooner, a slot's job finished). It
never polls while idle beyond ``max_sleep_seconds``, which bounds how late a
job runs after the wall clock jumps forward. One scheduler is active at a time
(in a cluster, the elected one); a stale second one is harmless, since every
job changes state in a transaction that conflicts with any other doing the same.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from syncline.database import Transaction
from syncline.jobs import (
    BY_NEXT_RUN,
    BY_STATE,
    CRON_JOBS,
    FINISHED,
    SCHEDULED_FUNCTIONS,
    JobState,
    job_table_index_ids,
    read_system_tables,
)
from syncline.runtime import Deployment, FunctionRunner
from syncline.scheduler._crons import fire_cron, reconcile_crons, replan_crons
from syncline.scheduler._execute import Outcome, execute_job, fail_interrupted_actions
from syncline.storage import Document, Storage
from syncline.telemetry import scheduler_lateness

log = logging.getLogger(__name__)

_RECENT = 10_000
"""Lateness samples kept for the stats."""
_SWEEP_BATCH = 500
_CLOCK_JUMP_MS = 1000.0
"""A wall clock that moved back more than this between scans jumped."""
_PEEK_INTERVAL_SECONDS = 0.01
"""Least time between two looks at the commit log for job writes."""
_COMMIT_PEEK = 1000
"""Commit-log rows read to see whether jobs or crons were written."""
_START_CHUNK = 32
"""Jobs started per turn of the event loop."""
MAX_SCAN = 1024
"""Most due jobs read in one scan (the page limit of a query)."""


@dataclass(frozen=True)
class SchedulerConfig:
    max_concurrent_jobs: int = 256
    """Jobs running at once (mutations and actions together)."""
    max_sleep_seconds: float = 1.0
    """The longest the scheduler sleeps without looking at the clock."""
    retry_backoff_seconds: float = 0.5
    """First wait before a job that hit a transient failure runs again; doubles to 30 s."""
    retention_seconds: float = 7 * 86400.0
    """Finished jobs older than this are deleted."""
    retention_interval_seconds: float = 600.0
    """How often finished jobs past their retention are deleted."""


@dataclass
class SchedulerStats:
    executed: int = 0
    failed: int = 0
    skipped: int = 0
    retried: int = 0
    crons_fired: int = 0
    scans: int = 0
    """Reads of the due jobs (commits that write no job or cron cause none)."""
    interrupted_actions_failed: int = 0
    due_backlog: int = 0
    """Due pending jobs read by the last scan: a lower bound of the queue (one page)."""

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


class JobScheduler:
    """Runs the live deployment's scheduled functions and crons."""

    def __init__(
        self,
        storage: Storage,
        runner: FunctionRunner,
        *,
        config: SchedulerConfig | None = None,
        clock_ms: Callable[[], float] = lambda: time.time() * 1000.0,
    ) -> None:
        self._storage = storage
        self._runner = runner
        self._config = config or SchedulerConfig()
        self._clock_ms = clock_ms
        self.stats = SchedulerStats()
        self.lateness_ms: deque[float] = deque(maxlen=_RECENT)
        """Start time minus scheduled time of recently started jobs."""
        self._wake = asyncio.Event()
        self._rescan = True
        """Scan the due jobs at the next turn of the loop."""
        self._commits_seen = False
        """Commits were notified since the last look at the commit log."""
        self._position = 0
        """The commit-log ts up to which commits were looked at."""
        self._last_peek = 0.0
        self._crons_stale = True
        self._running: dict[str, asyncio.Task[None]] = {}
        self._finished_at: dict[str, int] = {}
        """Jobs this scheduler finished, with the commit ts: a scan at an older
        snapshot still sees them pending and must not start them again."""
        self._retry_after: dict[str, float] = {}
        self._backoff: dict[str, float] = {}
        self._firing: set[str] = set()
        self._last_now = clock_ms()
        self._replan_crons = False
        self._cursor: str | None = None
        """Where the next scan of due jobs resumes (None: from the front)."""
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Fail actions a previous scheduler left running, then start the loops."""
        await self._fail_interrupted_actions()
        self._tasks = [
            asyncio.create_task(self._loop(), name="scheduler"),
            asyncio.create_task(self._sweep_forever(), name="scheduler-retention"),
        ]

    async def close(self, *, drain_seconds: float = 5.0) -> None:
        """Stop starting jobs; let running ones finish for ``drain_seconds``."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        running = list(self._running.values())
        if running:
            _, late = await asyncio.wait(running, timeout=drain_seconds)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    async def __aenter__(self) -> JobScheduler:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def notify_commit(self, ts: int) -> None:
        """A commit became visible: if it wrote a job or a cron, look again."""
        self._commits_seen = True
        self._wake.set()

    def wake(self) -> None:
        """Look at the clock and the job tables now (after the clock was changed)."""
        self._rescan = True
        self._wake.set()

    def deployment_changed(self, deployment: Deployment | None = None) -> None:
        """A new version went live: its crons replace the old ones."""
        self._crons_stale = True
        self.wake()

    def _clock_went_back(self, now: float) -> bool:
        went_back = now < self._last_now - _CLOCK_JUMP_MS
        self._last_now = now
        return went_back

    @property
    def running(self) -> int:
        return len(self._running)

    # -- the loop --------------------------------------------------------------------------

    async def _loop(self) -> None:
        next_due: float | None = None
        while not self._closed:
            now = self._clock_ms()
            sleep = self._config.max_sleep_seconds
            if next_due is not None:
                sleep = max(0.0, min(sleep, (next_due - now) / 1000.0))
            if sleep > 0 and not self._rescan:
                try:
                    await asyncio.wait_for(self._wake.wait(), sleep)
                except TimeoutError:
                    self._rescan = True  # something is due, or it is time to look anyway
            else:
                self._rescan = True
            self._wake.clear()
            if self._closed:
                return
            try:
                if self._crons_stale:
                    self._crons_stale = False
                    await reconcile_crons(self._runner, clock_ms=self._clock_ms)
                if self._clock_went_back(self._clock_ms()) or self._replan_crons:
                    self._replan_crons = True
                    await replan_crons(self._runner, clock_ms=self._clock_ms)
                    self._replan_crons = False
                if not self._rescan and self._commits_seen:
                    # Under a steady stream of commits, look at most every
                    # _PEEK_INTERVAL: one read covers every commit since.
                    pause = self._last_peek + _PEEK_INTERVAL_SECONDS - time.monotonic()
                    if pause > 0:
                        await asyncio.sleep(pause)
                    self._commits_seen = False
                    self._last_peek = time.monotonic()
                    self._rescan = await self._job_tables_written()
                if self._rescan:
                    self._rescan = False
                    next_due = await self._scan()
            except Exception as exc:
                # Storage or the txn service is away: look again shortly.
                log.warning("scheduler scan failed, retrying: %r", exc)
                next_due = self._clock_ms() + self._config.retry_backoff_seconds * 1000.0

    async def _scan(self) -> float | None:
        """Start what is due; the time the next pending job or cron is due."""
        self.stats.scans += 1
        await self._runner.wait_for_stable_deployment()
        deployment = self._runner.current_deployment
        free = self._config.max_concurrent_jobs - len(self._running)
        now = self._clock_ms()
        full_pass = False
        async with self._storage.snapshot() as snapshot:
            db = read_system_tables(snapshot, deployment.model)
            due: list[Document] = []
            # Resume after the last job started, so the jobs still running at the
            # front of the range are not read again on every wake-up; start over
            # from the front once the end is reached (retries, late arrivals).
            limit = free if self._cursor is not None else free + len(self._running)
            limit = min(limit + len(self._retry_after), MAX_SCAN)
            if free > 0:
                page = await (
                    db.query(SCHEDULED_FUNCTIONS)
                    .with_index(BY_STATE, lambda q: _pending(q).lte("scheduledTime", now))
                    .paginate({"numItems": limit, "cursor": self._cursor})
                )
                due = page["page"]
                full_pass = self._cursor is None and page["isDone"]
                self._cursor = None if page["isDone"] else page["continueCursor"]
            upcoming = await (
                db.query(SCHEDULED_FUNCTIONS)
                .with_index(BY_STATE, lambda q: _pending(q).gt("scheduledTime", now))
                .first()
            )
            crons = await (
                db.query(CRON_JOBS).with_index(BY_NEXT_RUN, lambda q: q.lte("nextRunTime", now))
            ).take(100)
            next_cron = await (
                db.query(CRON_JOBS).with_index(BY_NEXT_RUN, lambda q: q.gt("nextRunTime", now))
            ).first()
            seen_ts = snapshot.ts
        self._position = max(self._position, seen_ts)
        self.stats.due_backlog = len(due)
        if free > 0 and full_pass:
            # Every due job was seen: forget retry times of jobs no longer pending.
            due_ids = {str(job["_id"]) for job in due}
            self._retry_after = {k: t for k, t in self._retry_after.items() if k in due_ids}
        self._finished_at = {k: ts for k, ts in self._finished_at.items() if ts > seen_ts}
        retry_due: float | None = None
        started = 0
        for job in due:
            job_id = str(job["_id"])
            if job_id in self._running or job_id in self._finished_at:
                continue
            not_before = self._retry_after.get(job_id)
            if not_before is not None and not_before > now:
                retry_due = min(retry_due or math.inf, not_before)
                continue
            if len(self._running) >= self._config.max_concurrent_jobs:
                break
            self._start_job(job, now, seen_ts)
            started += 1
            if started % _START_CHUNK == 0:
                # Let this chunk run up to its commit (sent as one call) while the
                # next is prepared: the txn service works while this loop does.
                await asyncio.sleep(0)
        for cron in crons:
            cron_id = str(cron["_id"])
            if cron_id not in self._firing:
                self._firing.add(cron_id)
                self._spawn(self._fire(cron_id), f"cron {cron.get('name')}")
        candidates = [
            retry_due,
            float(upcoming["scheduledTime"]) if upcoming else None,
            float(next_cron["nextRunTime"]) if next_cron else None,
        ]
        known = [c for c in candidates if c is not None]
        return min(known) if known else None

    async def _job_tables_written(self) -> bool:
        """Whether commits since the last look wrote a job or a cron: one cheap read
        of the commit log instead of a scan for every commit an app makes."""
        commits = await self._storage.commits_after(self._position, limit=_COMMIT_PEEK)
        if not commits:
            return False
        self._position = commits[-1].ts
        if len(commits) == _COMMIT_PEEK:
            return True  # a lot happened: just look
        watched = job_table_index_ids(self._runner.current_deployment.model)
        return any(index_id in watched for c in commits for index_id, _ in c.keys)

    def _start_job(self, job: Document, now: float, seen_ts: int) -> None:
        job_id = str(job["_id"])
        lateness_ms = max(0.0, now - float(job.get("scheduledTime", now)))
        self.lateness_ms.append(lateness_ms)
        scheduler_lateness.record(lateness_ms / 1000)
        task = asyncio.create_task(self._run(job, seen_ts), name=f"job {job.get('name')}")
        self._running[job_id] = task

    async def _run(self, job: Document, seen_ts: int) -> None:
        job_id = str(job["_id"])
        try:
            outcome, ts = await execute_job(
                self._runner, job, seen_at=seen_ts, clock_ms=self._clock_ms
            )
        except Exception:
            log.exception(
                "scheduled %s (%s) failed unexpectedly; will retry", job.get("name"), job_id
            )
            outcome, ts = Outcome.RETRY, None
        finally:
            self._running.pop(job_id, None)
        if outcome is Outcome.RETRY:
            backoff = self._backoff.get(job_id, self._config.retry_backoff_seconds)
            self._backoff[job_id] = min(backoff * 2, 30.0)
            self._retry_after[job_id] = self._clock_ms() + backoff * 1000.0
            self.stats.retried += 1
        else:
            self._backoff.pop(job_id, None)
            self._retry_after.pop(job_id, None)
            if ts is not None:
                self._finished_at[job_id] = ts
            if outcome is Outcome.SUCCESS:
                self.stats.executed += 1
            elif outcome is Outcome.FAILED:
                self.stats.failed += 1
            else:
                self.stats.skipped += 1
        self.wake()  # a slot is free

    async def _fire(self, cron_id: str) -> None:
        try:
            if await fire_cron(self._runner, cron_id, clock_ms=self._clock_ms) is not None:
                self.stats.crons_fired += 1
        except Exception as exc:
            log.warning("firing cron %s failed, will retry: %r", cron_id, exc)
        finally:
            self._firing.discard(cron_id)
        self.wake()

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.append(task)
        task.add_done_callback(self._tasks.remove)

    # -- recovery and retention ------------------------------------------------------------

    async def _fail_interrupted_actions(self) -> None:
        jobs = await self._jobs_in_state(JobState.IN_PROGRESS)
        failed = await fail_interrupted_actions(self._runner, jobs, clock_ms=self._clock_ms)
        if failed:
            log.warning("%d scheduled actions were interrupted and are marked failed", failed)
        self.stats.interrupted_actions_failed += failed

    async def _jobs_in_state(
        self, state: JobState, *, before_ms: float | None = None
    ) -> list[Document]:
        await self._runner.wait_for_stable_deployment()
        deployment = self._runner.current_deployment
        async with self._storage.snapshot() as snapshot:
            db = read_system_tables(snapshot, deployment.model)

            def in_state(q: Any) -> Any:
                q = q.eq("state.kind", state.value)
                return q.lt("scheduledTime", before_ms) if before_ms is not None else q

            return await (
                db.query(SCHEDULED_FUNCTIONS).with_index(BY_STATE, in_state).take(_SWEEP_BATCH)
            )

    async def _sweep_forever(self) -> None:
        while not self._closed:
            await asyncio.sleep(self._config.retention_interval_seconds)
            try:
                await self.sweep()
            except Exception as exc:
                log.warning("deleting old scheduled jobs failed, will retry: %r", exc)

    async def sweep(self) -> int:
        """Delete finished jobs that completed before the retention period; how many."""
        cutoff = self._clock_ms() - self._config.retention_seconds * 1000.0
        deleted = 0
        for state in sorted(FINISHED, key=lambda s: s.value):
            while True:
                # A job completes after it was due: due-before-cutoff covers every candidate.
                batch = [
                    job
                    for job in await self._jobs_in_state(state, before_ms=cutoff)
                    if float(job.get("completedTime", cutoff)) < cutoff
                ]
                if batch:
                    deleted += await self._delete(batch)
                if len(batch) < _SWEEP_BATCH:
                    break
        return deleted

    async def _delete(self, jobs: list[Document]) -> int:
        async def body(tx: Transaction, deployment: Deployment) -> None:
            for job in jobs:
                if await tx.get(job["_id"]) is not None:
                    await tx.delete(job["_id"])

        await self._runner.transact(body, what="scheduler retention")
        return len(jobs)


def _pending(q: Any) -> Any:
    return q.eq("state.kind", JobState.PENDING.value)
