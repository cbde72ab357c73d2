"""The cluster: txn, sync, gateway and scheduler services, leader election, committing through the leader."""

import os

# Processes that use gRPC may also start servers (local clusters, tests); gRPC's fork
# handlers can crash such a child before it execs. Set before grpc is imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

from syncline.cluster._deployments import ClusterDeployments
from syncline.cluster._election import LeaderElection
from syncline.cluster._gateway import Gateway, GatewayConfig
from syncline.cluster._remote import RemoteCommitter
from syncline.cluster._scheduler_node import SchedulerNode, SchedulerNodeConfig
from syncline.cluster._service import ServiceNode, run_until_signalled
from syncline.cluster._sync_node import NodeState, SyncConfig, SyncNode
from syncline.cluster._txn_node import Role, TxnConfig, TxnNode
from syncline.cluster._validate import validate_commit
from syncline.cluster._wire import request_from_proto, request_to_proto

__all__ = [
    "ClusterDeployments",
    "Gateway",
    "GatewayConfig",
    "LeaderElection",
    "NodeState",
    "RemoteCommitter",
    "Role",
    "SchedulerNode",
    "SchedulerNodeConfig",
    "ServiceNode",
    "SyncConfig",
    "SyncNode",
    "TxnConfig",
    "TxnNode",
    "request_from_proto",
    "request_to_proto",
    "run_until_signalled",
    "validate_commit",
]
