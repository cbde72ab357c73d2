"""Running one due job: a mutation exactly once, an action at most once.

A scheduled mutation runs in one transaction with its job: it reads the job
(so the job is in its read set), runs the function, and marks the job done. Two
schedulers running the same job conflict on the job document, and the loser's
re-run finds the job no longer pending. A user error rolls the mutation back
and records the job as failed, in a transaction of its own.

A scheduled action first commits its job as in progress (only one scheduler can
move it from pending), then runs outside any transaction, then records how it
ended. An action whose scheduler died in between stays in progress until the
next scheduler marks it failed (``fail_interrupted_actions``); it is never
re-run.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import Any

from syncline._errors import OccConflictError, SynclineError, UnavailableError
from syncline.database import Transaction
from syncline.functions import FunctionKind
from syncline.jobs import JobState, read_job, set_state, state_of
from syncline.runtime import ANONYMOUS, Deployment, FunctionRunner
from syncline.storage import Document

log = logging.getLogger(__name__)

INTERRUPTED = (
    "the scheduler running this action stopped before the action finished; "
    "it may have partly run, and actions are not retried"
)
"""The error recorded on an action whose run was interrupted."""


class Outcome(enum.Enum):
    SUCCESS = "success"
    FAILED = "failed"
    SKIPPED = "skipped"
    """No longer pending when its turn came: canceled, or run by another scheduler."""
    RETRY = "retry"
    """A transient failure (storage or txn unavailable): still pending, run it later."""


Clock = Callable[[], float]


async def execute_job(
    runner: FunctionRunner, job: Document, *, seen_at: int, clock_ms: Clock
) -> tuple[Outcome, int | None]:
    """Run one pending job, as read at ts ``seen_at``; the outcome and the ts it was
    recorded at (if it was)."""
    path = str(job.get("name", ""))
    spec = runner.function_spec(path)
    first = _FirstRead(job, seen_at)
    try:
        if spec is not None and spec.kind is FunctionKind.ACTION:
            return await _run_action(runner, first, clock_ms=clock_ms)
        return await _run_mutation(runner, first, clock_ms=clock_ms)
    except (UnavailableError, OccConflictError) as exc:
        log.warning("scheduled %s (%s) will be retried: %s", path, job["_id"], exc.message)
        return Outcome.RETRY, None


class _FirstRead:
    """The job as the scan read it: the first attempt takes it from there (one read
    fewer, and none at all for a mutation that only writes); a re-run reads it anew."""

    def __init__(self, job: Document, seen_at: int) -> None:
        self.job_id = str(job["_id"])
        self.path = str(job.get("name", ""))
        self._job: Document | None = job
        self._seen_at = seen_at

    async def read(self, tx: Transaction) -> Document | None:
        job, self._job = self._job, None
        if job is None:
            return await read_job(tx, self.job_id, "scheduler")
        tx.assume(job, self._seen_at)
        return job


async def _run_mutation(
    runner: FunctionRunner, first: _FirstRead, *, clock_ms: Clock
) -> tuple[Outcome, int | None]:
    job_id, path = first.job_id, first.path
    skipped = False
    presence = runner.presence_writer()
    lines: list[str] = []

    async def body(tx: Transaction, deployment: Deployment) -> Any:
        nonlocal skipped, presence, lines
        current = await first.read(tx)
        skipped = current is None or state_of(current) is not JobState.PENDING
        if skipped:
            return None
        assert current is not None
        presence = runner.presence_writer()  # only the committed attempt's changes apply
        value, lines = await runner.execute_mutation(
            tx,
            deployment,
            path,
            _job_args(current),
            ANONYMOUS,
            parent_job_id=job_id,
            presence=presence,
        )
        await set_state(tx, current, JobState.SUCCESS, now_ms=clock_ms())
        return value

    try:
        result = await runner.transact(body, what=path)
    except (UnavailableError, OccConflictError):
        raise
    except SynclineError as exc:
        runner.record_logs(path, FunctionKind.MUTATION, lines, exc)
        return await _record_failure(runner, job_id, JobState.PENDING, exc.message, clock_ms)
    if skipped:
        return Outcome.SKIPPED, None
    runner.record_logs(path, FunctionKind.MUTATION, lines)
    await runner.apply_presence(presence)
    return Outcome.SUCCESS, result.ts


async def _run_action(
    runner: FunctionRunner, first: _FirstRead, *, clock_ms: Clock
) -> tuple[Outcome, int | None]:
    job_id, path = first.job_id, first.path
    args: dict[str, Any] = {}

    async def start(tx: Transaction, deployment: Deployment) -> bool:
        nonlocal args
        current = await first.read(tx)
        if current is None or state_of(current) is not JobState.PENDING:
            return False
        args = _job_args(current)
        await set_state(tx, current, JobState.IN_PROGRESS, now_ms=clock_ms())
        return True

    started = await runner.transact(start, what=path)
    if not started.value:
        return Outcome.SKIPPED, None
    # From here on the action has started: whatever happens, it is never run again.
    error: str | None = None
    try:
        # The job names what was scheduled: Syncline's own functions run too.
        await runner.run_action(
            path, args, ANONYMOUS, from_function=True, parent_job_id=job_id, trusted=True
        )
    except SynclineError as exc:
        error = exc.message
    state = JobState.FAILED if error is not None else JobState.SUCCESS
    return await _finish(runner, job_id, state, error, clock_ms)


async def _finish(
    runner: FunctionRunner, job_id: str, state: JobState, error: str | None, clock_ms: Clock
) -> tuple[Outcome, int | None]:
    """Record how a started action ended, unless the job was canceled meanwhile (or
    another scheduler already declared it interrupted)."""

    async def body(tx: Transaction, deployment: Deployment) -> None:
        current = await read_job(tx, job_id, "scheduler")
        if current is not None and state_of(current) is JobState.IN_PROGRESS:
            await set_state(tx, current, state, now_ms=clock_ms(), error=error)

    result = await runner.transact(body, what="scheduler")
    return (Outcome.SUCCESS if state is JobState.SUCCESS else Outcome.FAILED), result.ts


async def _record_failure(
    runner: FunctionRunner, job_id: str, expected: JobState, error: str, clock_ms: Clock
) -> tuple[Outcome, int | None]:
    recorded = False

    async def body(tx: Transaction, deployment: Deployment) -> None:
        nonlocal recorded
        current = await read_job(tx, job_id, "scheduler")
        recorded = current is not None and state_of(current) is expected
        if recorded:
            assert current is not None
            await set_state(tx, current, JobState.FAILED, now_ms=clock_ms(), error=error)

    result = await runner.transact(body, what="scheduler")
    return (Outcome.FAILED if recorded else Outcome.SKIPPED), result.ts


def _job_args(job: Document) -> dict[str, Any]:
    args = job.get("args")
    if isinstance(args, list) and len(args) == 1 and isinstance(args[0], dict):
        return args[0]
    return {}


async def fail_interrupted_actions(
    runner: FunctionRunner, jobs: list[Document], *, clock_ms: Clock
) -> int:
    """Mark in-progress actions left by a stopped scheduler as failed; how many."""
    failed = 0

    async def body(tx: Transaction, deployment: Deployment) -> None:
        nonlocal failed
        failed = 0
        for job in jobs:
            current = await read_job(tx, str(job["_id"]), "scheduler")
            if current is not None and state_of(current) is JobState.IN_PROGRESS:
                await set_state(tx, current, JobState.FAILED, now_ms=clock_ms(), error=INTERRUPTED)
                failed += 1

    if jobs:
        await runner.transact(body, what="scheduler")
    return failed
