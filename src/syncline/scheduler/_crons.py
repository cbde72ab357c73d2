"""Crons at run time: ``_cron_jobs`` follows the live ``crons.py``; due crons fire jobs.

Each cron document holds its next run time. Firing a cron is one transaction:
schedule a job for the tick that came due, and move the cron to its first tick
after now, so a cron that missed ticks during an outage runs once, not once per
missed tick. A deploy's crons replace the previous ones in one transaction.
"""

from __future__ import annotations

import logging
from typing import Any

from syncline._errors import SynclineError
from syncline.database import Transaction
from syncline.jobs import (
    BY_NAME,
    CRON_JOBS,
    CronJob,
    CronSchedule,
    IntervalSchedule,
    Schedule,
    insert_job,
    schedulable,
    system_reader,
)
from syncline.runtime import Deployment, FunctionRunner
from syncline.scheduler._execute import Clock
from syncline.storage import Document

log = logging.getLogger(__name__)


def _document(job: CronJob, next_run_ms: float) -> dict[str, Any]:
    return {
        "name": job.name,
        "function": job.path,
        "args": [job.args],
        "schedule": job.schedule.to_json(),
        "nextRunTime": next_run_ms,
    }


def schedule_of(cron: Document) -> Schedule:
    spec = cron.get("schedule")
    if isinstance(spec, dict) and isinstance(spec.get("interval"), int | float):
        return IntervalSchedule(float(spec["interval"]))
    if isinstance(spec, dict) and isinstance(spec.get("cron"), str):
        return CronSchedule.parse(spec["cron"])
    raise SynclineError(f"cron {cron.get('name')!r} has no valid schedule")


async def reconcile_crons(runner: FunctionRunner, *, clock_ms: Clock) -> int:
    """Make ``_cron_jobs`` match the live app's crons, in one transaction; changes made."""
    changes = 0

    async def body(tx: Transaction, deployment: Deployment) -> None:
        nonlocal changes
        changes = 0
        now = clock_ms()
        wanted = deployment.app.crons
        table = tx.model.table(CRON_JOBS)
        if table is None:
            raise SynclineError("this deployment has no cron table; deploy again")
        db = system_reader(tx)
        existing = await db.query(CRON_JOBS).with_index(BY_NAME).collect()
        seen: set[str] = set()
        for cron in existing:
            name = str(cron.get("name"))
            job = wanted.get(name)
            if job is None or name in seen:
                await tx.delete(cron["_id"])
                changes += 1
                continue
            seen.add(name)
            same_schedule = cron.get("schedule") == job.schedule.to_json()
            next_run = cron["nextRunTime"] if same_schedule else job.schedule.first_run_ms(now)
            document = _document(job, next_run)
            if any(cron.get(k) != v for k, v in document.items()):
                await tx.replace(cron["_id"], document)
                changes += 1
        for name, job in wanted.items():
            if name not in seen:
                await tx.insert(table, _document(job, job.schedule.first_run_ms(now)), now_ms=now)
                changes += 1

    await runner.transact(body, what="crons")
    if changes:
        log.info("crons updated: %d changed", changes)
    return changes


async def fire_cron(runner: FunctionRunner, cron_id: str, *, clock_ms: Clock) -> int | None:
    """Schedule the job of a due cron and move the cron on; the commit ts, if it fired."""
    fired = False

    async def body(tx: Transaction, deployment: Deployment) -> None:
        nonlocal fired
        now = clock_ms()
        cron = await tx.get(cron_id)
        fired = cron is not None and float(cron["nextRunTime"]) <= now
        if not fired:
            return
        assert cron is not None
        due = float(cron["nextRunTime"])
        schedule = schedule_of(cron)
        try:
            spec = schedulable(deployment.app.functions, cron.get("function"), "cron")
            args = cron.get("args")
            await insert_job(
                tx, spec, args[0] if isinstance(args, list) and args else {}, due_ms=due, now_ms=now
            )
        except SynclineError as exc:
            # The cron still moves on: a bad tick must not fire again and again.
            log.error("cron %r could not schedule its job: %s", cron.get("name"), exc.message)
        await tx.patch(cron_id, {"nextRunTime": schedule.next_run_ms(due, now)})

    result = await runner.transact(body, what="crons")
    return result.ts if fired else None


async def replan_crons(runner: FunctionRunner, *, clock_ms: Clock) -> int:
    """After the clock went back: no cron waits longer than its schedule says from
    now (an interval cron would otherwise wait the jump on top). How many moved."""
    moved = 0

    async def body(tx: Transaction, deployment: Deployment) -> None:
        nonlocal moved
        moved = 0
        now = clock_ms()
        db = system_reader(tx)
        for cron in await db.query(CRON_JOBS).with_index(BY_NAME).collect():
            first = schedule_of(cron).first_run_ms(now)
            if float(cron["nextRunTime"]) > first:
                await tx.patch(cron["_id"], {"nextRunTime": first})
                moved += 1

    await runner.transact(body, what="crons")
    if moved:
        log.warning("the clock went back: %d crons rescheduled from the new time", moved)
    return moved
