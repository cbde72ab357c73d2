"""The system tables behind scheduled functions and crons.

They are ordinary tables (queryable and reactive through ``ctx.db.system``)
that every deployment has, whatever its schema; only Syncline writes them.
"""

from __future__ import annotations

from syncline.database import DatabaseReader, DataModel, PaginationJournal, Transaction
from syncline.schema import IndexDefinition
from syncline.storage import Snapshot

SCHEDULED_FUNCTIONS = "_scheduled_functions"
"""One document per scheduled call, in Convex's shape:
``{name, args: [args], scheduledTime, completedTime?, state: {kind, error?}}``."""

CRON_JOBS = "_cron_jobs"
"""One document per cron of the live ``crons.py``:
``{name, function, args: [args], schedule, nextRunTime}``."""

BY_STATE = "by_state"
"""Jobs by state, then by scheduled time: the scheduler's due-job range."""

BY_NEXT_RUN = "by_next_run"
BY_NAME = "by_name"

SYSTEM_TABLES: dict[str, tuple[IndexDefinition, ...]] = {
    SCHEDULED_FUNCTIONS: (IndexDefinition(BY_STATE, ("state.kind", "scheduledTime")),),
    CRON_JOBS: (
        IndexDefinition(BY_NAME, ("name",)),
        IndexDefinition(BY_NEXT_RUN, ("nextRunTime",)),
    ),
}
"""Every system table and its indexes beyond ``by_id`` and ``by_creation_time``."""


def system_reader(tx: Transaction) -> DatabaseReader:
    """``ctx.db.system`` over ``tx``: how Syncline reads its own tables."""
    return DatabaseReader(tx, PaginationJournal(), system=True)


def read_system_tables(snapshot: Snapshot, model: DataModel) -> DatabaseReader:
    """A read-only view of the system tables at ``snapshot``."""
    return system_reader(Transaction(snapshot, model, read_only=True))


def job_table_index_ids(model: DataModel) -> frozenset[int]:
    """Every index of the job and cron tables: a commit writing one wrote a job or a cron."""
    return frozenset(
        index.index_id
        for name in (SCHEDULED_FUNCTIONS, CRON_JOBS)
        if (table := model.table(name)) is not None
        for index in table.indexes.values()
    )
