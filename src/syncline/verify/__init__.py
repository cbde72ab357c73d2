"""``syncline verify``: workloads through the client protocols, and the checkers
that find anomalies in the histories they record."""

from syncline.verify._history import History, Op, OpType, Txn
from syncline.verify._list_append import Anomaly, ListAppendResult, Model, check_list_append

__all__ = [
    "Anomaly",
    "History",
    "ListAppendResult",
    "Model",
    "Op",
    "OpType",
    "Txn",
    "check_list_append",
]
