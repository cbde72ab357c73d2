"""Transactions: read sets, OCC validation and the committer."""

from syncline.txn._committer import (
    CommitClient,
    CommitOutcome,
    CommitRequest,
    Committer,
    CommitterConfig,
)
from syncline.txn._intervals import Interval, ReadSet, sorted_keys_by_index
from syncline.txn._window import Conflict, WriteWindow

__all__ = [
    "CommitClient",
    "CommitOutcome",
    "CommitRequest",
    "Committer",
    "CommitterConfig",
    "Conflict",
    "Interval",
    "ReadSet",
    "WriteWindow",
    "sorted_keys_by_index",
]
