"""Scheduled functions and crons: the documents, ``ctx.scheduler``, ``crons.py``."""

from syncline.jobs._crons import (
    CronJob,
    Crons,
    CronSchedule,
    IntervalSchedule,
    Schedule,
    cron_jobs,
)
from syncline.jobs._ctx import ActionScheduler, MutationScheduler, Transact, TransactionBody
from syncline.jobs._documents import (
    FINISHED,
    JobLimits,
    JobState,
    cancel_job,
    insert_job,
    read_job,
    schedulable,
    set_state,
    state_of,
)
from syncline.jobs._tables import (
    BY_NAME,
    BY_NEXT_RUN,
    BY_STATE,
    CRON_JOBS,
    SCHEDULED_FUNCTIONS,
    SYSTEM_TABLES,
    job_table_index_ids,
    read_system_tables,
    system_reader,
)

__all__ = [
    "BY_NAME",
    "BY_NEXT_RUN",
    "BY_STATE",
    "CRON_JOBS",
    "FINISHED",
    "SCHEDULED_FUNCTIONS",
    "SYSTEM_TABLES",
    "ActionScheduler",
    "CronJob",
    "CronSchedule",
    "Crons",
    "IntervalSchedule",
    "JobLimits",
    "JobState",
    "MutationScheduler",
    "Schedule",
    "Transact",
    "TransactionBody",
    "cancel_job",
    "cron_jobs",
    "insert_job",
    "job_table_index_ids",
    "read_job",
    "read_system_tables",
    "schedulable",
    "set_state",
    "state_of",
    "system_reader",
]
