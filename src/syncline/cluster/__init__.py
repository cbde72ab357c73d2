"""The cluster: the txn service, leader election, and committing through the leader."""

from syncline.cluster._deployments import ClusterDeployments
from syncline.cluster._election import LeaderElection
from syncline.cluster._remote import RemoteCommitter
from syncline.cluster._txn_node import Role, TxnConfig, TxnNode, run_until_signalled
from syncline.cluster._validate import validate_commit
from syncline.cluster._wire import request_from_proto, request_to_proto

__all__ = [
    "ClusterDeployments",
    "LeaderElection",
    "RemoteCommitter",
    "Role",
    "TxnConfig",
    "TxnNode",
    "request_from_proto",
    "request_to_proto",
    "run_until_signalled",
    "validate_commit",
]
