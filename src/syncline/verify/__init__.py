"""``syncline verify``: workloads through the client protocols, and the checkers
that find anomalies in the histories they record."""

from syncline.verify._bank import BankResult, check_bank
from syncline.verify._faults import ClientSuccesses, FaultInjector, FaultWindow, describe_windows
from syncline.verify._history import History, Op, OpType, Txn
from syncline.verify._list_append import Anomaly, ListAppendResult, Model, check_list_append
from syncline.verify._run import WORKLOADS, VerifyReport, WorkloadReport, verify
from syncline.verify._workloads import WorkloadConfig

__all__ = [
    "WORKLOADS",
    "Anomaly",
    "BankResult",
    "ClientSuccesses",
    "FaultInjector",
    "FaultWindow",
    "History",
    "ListAppendResult",
    "Model",
    "Op",
    "OpType",
    "Txn",
    "VerifyReport",
    "WorkloadConfig",
    "WorkloadReport",
    "check_bank",
    "check_list_append",
    "describe_windows",
    "verify",
]
