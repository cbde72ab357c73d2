"""``ctx.scheduler``: scheduling and cancelling functions from mutations and actions.

In a mutation the job is written in the mutation's own transaction, so a
mutation that fails schedules nothing. An action has no transaction: each call
commits one of its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from syncline._errors import ValidationError
from syncline.database import Transaction
from syncline.functions import FunctionSpec
from syncline.jobs._documents import (
    JobLimits,
    JobState,
    cancel_job,
    delay_due_time_ms,
    due_time_ms,
    insert_job,
    read_job,
    schedulable,
    state_of,
)

T = TypeVar("T")
TransactionBody = Callable[[Transaction, Mapping[str, FunctionSpec]], Awaitable[T]]
Transact = Callable[[TransactionBody[Any]], Awaitable[Any]]
"""Runs a body in a transaction of its own, with OCC retries, and commits it."""


class MutationScheduler:
    """``ctx.scheduler`` in a mutation."""

    def __init__(
        self,
        tx: Transaction,
        functions: Mapping[str, FunctionSpec],
        *,
        now_ms: Callable[[], float],
        limits: JobLimits,
        parent_job_id: str | None = None,
    ) -> None:
        self._tx = tx
        self._functions = functions
        self._now_ms = now_ms
        self._limits = limits
        self._parent_job_id = parent_job_id
        self._scheduled = 0

    async def run_after(self, seconds: float, ref: object, args: object = None) -> str:
        """Run ``ref(args)`` ``seconds`` from now; returns the job's id."""
        now = self._now_ms()
        due = delay_due_time_ms(seconds, now_ms=now, limits=self._limits)
        return await self._schedule(ref, args, due, now, "run_after")

    async def run_at(self, when: object, ref: object, args: object = None) -> str:
        """Run ``ref(args)`` at ``when``: epoch milliseconds or an aware datetime."""
        now = self._now_ms()
        due = due_time_ms(when, now_ms=now, limits=self._limits)
        return await self._schedule(ref, args, due, now, "run_at")

    async def cancel(self, job_id: str) -> None:
        """Cancel a job that has not finished (see ``cancel_job``)."""
        await cancel_job(self._tx, job_id, now_ms=self._now_ms())

    async def _schedule(self, ref: object, args: object, due: float, now: float, what: str) -> str:
        spec = schedulable(self._functions, ref, f"ctx.scheduler.{what}")
        if self._scheduled >= self._limits.max_jobs_per_transaction:
            raise ValidationError(
                f"ctx.scheduler.{what}: one function may schedule at most "
                f"{self._limits.max_jobs_per_transaction} jobs"
            )
        canceled = False
        if self._parent_job_id is not None:
            parent = await read_job(self._tx, self._parent_job_id, what)
            canceled = parent is not None and state_of(parent) is JobState.CANCELED
        job_id = await insert_job(self._tx, spec, args, due_ms=due, now_ms=now, canceled=canceled)
        self._scheduled += 1
        return job_id


class ActionScheduler:
    """``ctx.scheduler`` in an action: every call commits on its own."""

    def __init__(
        self,
        transact: Transact,
        *,
        now_ms: Callable[[], float],
        limits: JobLimits,
        parent_job_id: str | None = None,
    ) -> None:
        self._transact = transact
        self._now_ms = now_ms
        self._limits = limits
        self._parent_job_id = parent_job_id
        """Set when the action is itself a scheduled job: once that job is canceled,
        what the action schedules is created canceled."""

    def _in_transaction(
        self, tx: Transaction, functions: Mapping[str, FunctionSpec]
    ) -> MutationScheduler:
        return MutationScheduler(
            tx,
            functions,
            now_ms=self._now_ms,
            limits=self._limits,
            parent_job_id=self._parent_job_id,
        )

    async def run_after(self, seconds: float, ref: object, args: object = None) -> str:
        async def body(tx: Transaction, functions: Mapping[str, FunctionSpec]) -> str:
            return await self._in_transaction(tx, functions).run_after(seconds, ref, args)

        return str(await self._transact(body))

    async def run_at(self, when: object, ref: object, args: object = None) -> str:
        async def body(tx: Transaction, functions: Mapping[str, FunctionSpec]) -> str:
            return await self._in_transaction(tx, functions).run_at(when, ref, args)

        return str(await self._transact(body))

    async def cancel(self, job_id: str) -> None:
        async def body(tx: Transaction, functions: Mapping[str, FunctionSpec]) -> None:
            await cancel_job(tx, job_id, now_ms=self._now_ms())

        await self._transact(body)
