"""The scheduler: runs scheduled functions and crons (in-process, or as a service)."""

from syncline.scheduler._execute import INTERRUPTED, Outcome, execute_job
from syncline.scheduler._loop import JobScheduler, SchedulerConfig, SchedulerStats

__all__ = [
    "INTERRUPTED",
    "JobScheduler",
    "Outcome",
    "SchedulerConfig",
    "SchedulerStats",
    "execute_job",
]
