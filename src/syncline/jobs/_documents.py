"""Scheduled-function documents: creating them, and moving them between states.

Every change of a job is a write in some transaction: the caller's (scheduling,
cancelling), or the scheduler's (running). Because each of those transactions
reads the job document first, two that change one job conflict under OCC and
only one commits: that is what makes a scheduled mutation run exactly once and
a scheduled action start at most once.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from syncline._errors import (
    FunctionNotFoundError,
    FunctionTypeError,
    SynclineError,
    ValidationError,
)
from syncline.database import TableInfo, Transaction
from syncline.functions import FunctionKind, FunctionSpec, check_args, resolve_reference
from syncline.jobs._tables import SCHEDULED_FUNCTIONS
from syncline.storage import Document
from syncline.values import id_table_number


class JobState(enum.Enum):
    """A job's ``state.kind``, as Convex names them."""

    PENDING = "pending"
    IN_PROGRESS = "inProgress"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELED = "canceled"


FINISHED = frozenset({JobState.SUCCESS, JobState.FAILED, JobState.CANCELED})


@dataclass(frozen=True)
class JobLimits:
    """What one transaction may schedule, and how far away."""

    max_jobs_per_transaction: int = 1000
    horizon_seconds: float = 5 * 365 * 86400.0
    """The latest a job may be scheduled, from now."""
    max_past_seconds: float = 86400.0
    """A ``run_at`` time further in the past than this is refused as a likely unit
    mistake (seconds for milliseconds); a nearer past time runs at once."""


def state_of(job: Document) -> JobState:
    state = job.get("state")
    kind = state.get("kind") if isinstance(state, dict) else None
    try:
        return JobState(kind)
    except ValueError:
        raise SynclineError(f"scheduled function {job.get('_id')} has no valid state") from None


def job_table(tx: Transaction) -> TableInfo:
    table = tx.model.table(SCHEDULED_FUNCTIONS)
    if table is None:
        # Created by every deploy; missing only on data written by an older version.
        raise SynclineError("this deployment has no scheduled functions table; deploy again")
    return table


def schedulable(functions: Mapping[str, FunctionSpec], ref: object, what: str) -> FunctionSpec:
    """The mutation or action ``ref`` names in the live app (public or internal)."""
    path = resolve_reference(ref)
    spec = functions.get(path)
    if spec is None:
        raise FunctionNotFoundError(f"{what}: no function '{path}' in the deployed app")
    if spec.kind is FunctionKind.QUERY:
        raise FunctionTypeError(
            f"{what}: '{path}' is a query; only mutations and actions can be scheduled"
        )
    return spec


def due_time_ms(when: object, *, now_ms: float, limits: JobLimits) -> float:
    """Epoch milliseconds for ``run_at``'s ``when`` (epoch ms, or an aware datetime)."""
    if isinstance(when, datetime):
        if when.tzinfo is None:
            raise ValidationError(
                "run_at: the datetime has no timezone; pass an aware one, such as "
                "datetime.now(timezone.utc) + timedelta(minutes=5)"
            )
        ms = when.timestamp() * 1000.0
    elif isinstance(when, int | float) and not isinstance(when, bool) and math.isfinite(when):
        ms = float(when)
    else:
        raise ValidationError(
            f"run_at: expected epoch milliseconds or a datetime, got {type(when).__name__}"
        )
    if ms < now_ms - limits.max_past_seconds * 1000.0:
        raise ValidationError(
            f"run_at: {ms:.0f} is more than {limits.max_past_seconds / 3600:g} h in the past; "
            "run_at takes epoch milliseconds (for a delay in seconds, use run_after)"
        )
    _check_horizon(ms, now_ms=now_ms, limits=limits, what="run_at")
    return ms


def delay_due_time_ms(seconds: object, *, now_ms: float, limits: JobLimits) -> float:
    """Epoch milliseconds for ``run_after``'s delay in seconds."""
    if (
        not isinstance(seconds, int | float)
        or isinstance(seconds, bool)
        or not math.isfinite(seconds)
        or seconds < 0
    ):
        raise ValidationError(
            f"run_after: the delay must be a number of seconds >= 0, got {seconds!r}"
        )
    ms = now_ms + float(seconds) * 1000.0
    _check_horizon(ms, now_ms=now_ms, limits=limits, what="run_after")
    return ms


def _check_horizon(ms: float, *, now_ms: float, limits: JobLimits, what: str) -> None:
    if ms > now_ms + limits.horizon_seconds * 1000.0:
        raise ValidationError(
            f"{what}: the time is more than {limits.horizon_seconds / 86400:g} days away, "
            "beyond the scheduling horizon"
        )


async def insert_job(
    tx: Transaction,
    spec: FunctionSpec,
    args: object,
    *,
    due_ms: float,
    now_ms: float,
    canceled: bool = False,
) -> str:
    """Write a new job document; ``args`` are checked against the function now."""
    checked = check_args(spec, {} if args is None else args, id_table=tx.model.id_table_name)
    assert spec.path is not None
    job: dict[str, Any] = {"name": spec.path, "args": [checked], "scheduledTime": due_ms}
    if canceled:
        job["state"] = {"kind": JobState.CANCELED.value}
        job["completedTime"] = now_ms
    else:
        job["state"] = {"kind": JobState.PENDING.value}
    return await tx.insert(job_table(tx), job, now_ms=now_ms)


async def read_job(tx: Transaction, job_id: object, what: str) -> Document | None:
    """The job ``job_id`` names (None if retention removed it); in the read set."""
    table = job_table(tx)
    if not isinstance(job_id, str) or id_table_number(job_id) != table.meta.table_number:
        raise ValidationError(f"{what}: {str(job_id)[:64]!r} is not a scheduled function id")
    return await tx.get(job_id)


async def set_state(
    tx: Transaction, job: Document, state: JobState, *, now_ms: float, error: str | None = None
) -> None:
    fields: dict[str, Any] = {"state": {"kind": state.value}}
    if error is not None:
        fields["state"]["error"] = error
    if state in FINISHED:
        fields["completedTime"] = now_ms
    await tx.patch(job["_id"], fields)


async def cancel_job(tx: Transaction, job_id: object, *, now_ms: float) -> None:
    """Cancel a job that has not finished; a finished (or removed) one is left alone.

    A pending job will not run. A running action keeps running, but what it
    schedules from then on is created canceled.
    """
    job = await read_job(tx, job_id, "cancel")
    if job is None or state_of(job) in FINISHED:
        return
    await set_state(tx, job, JobState.CANCELED, now_ms=now_ms)
