"""What running a function gives back, how it may fail, and how runs are bounded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from syncline._errors import SynclineError
from syncline.database import TransactionLimits
from syncline.jobs import JobLimits
from syncline.txn import ReadSet


class UncaughtFunctionError(SynclineError):
    """A function raised something other than AppError: clients see no internals."""

    code = "InternalError"


@dataclass
class QueryResult:
    value: Any
    ts: int
    read_set: ReadSet
    journal: str | None
    log_lines: list[str]
    read_identity: bool
    rooms: frozenset[str] = frozenset()
    """Presence rooms the query read: a subscription re-runs when one changes."""
    feeds: frozenset[str] = frozenset()
    """System feeds (the cluster's health) it read: a change to one re-runs it too."""


@dataclass
class MutationResult:
    value: Any
    ts: int
    log_lines: list[str]
    deduplicated: bool = False


@dataclass
class ActionResult:
    value: Any
    log_lines: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RunnerConfig:
    max_occ_retries: int = 16
    """Re-executions of a mutation that keeps conflicting before it fails."""
    occ_backoff_seconds: float = 0.002
    """Initial backoff between OCC retries; doubles with jitter, capped at 0.2 s."""
    unavailable_retry_seconds: float = 30.0
    """How long a mutation keeps retrying while storage or the txn leader is unavailable."""
    jobs: JobLimits = field(default_factory=JobLimits)
    """What ``ctx.scheduler`` may schedule."""
    transaction_limits: TransactionLimits = field(default_factory=TransactionLimits)
    """What one query or mutation may read and write."""
    max_execution_seconds: float | None = 1.0
    """How long a query or mutation's own code may run, waits for storage not
    counted (None: no limit). Actions have none."""
    client_log_lines: bool = True
    """Whether what functions log reaches every caller as Convex ``logLines`` (a
    development server). Off, only admin callers get them; the log tail always does."""
