"""The cluster's health as ZooKeeper records it, for the admin dashboard.

Everything comes from nodes ZooKeeper already holds: sync nodes' and gateways'
ephemeral registrations per region (sessions, where reads go, replica lag), and
the txn and scheduler elections (the announced leader, and how many contend).
A region is the primary one when none of its sync nodes reads from a replica.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from syncline.cluster._zk import ZkSession


@dataclass(frozen=True)
class HealthPaths:
    """Where each role registers in ZooKeeper (each service's ``zk_path``)."""

    sync: str
    txn: str
    scheduler: str


def _children(client: KazooClient, path: str) -> list[str]:
    try:
        return sorted(client.get_children(path))
    except NoNodeError:
        return []


def _record(client: KazooClient, path: str) -> dict[str, Any] | None:
    try:
        data, _ = client.get(path)
        record = json.loads(data)
    except (NoNodeError, ValueError):
        return None  # gone meanwhile, or not a record of ours
    return record if isinstance(record, dict) else None


def _nodes(client: KazooClient, path: str, role: str) -> list[dict[str, Any]]:
    nodes = []
    for child in _children(client, path):
        record = _record(client, f"{path}/{child}")
        if record is None:
            continue
        nodes.append(
            {
                "id": child,
                "role": role,
                "address": str(record.get("address", "")),
                "sessions": float(record.get("sessions", 0)),
                "reads": record.get("reads"),
                "replicaLagSeconds": record.get("replica_lag_seconds"),
            }
        )
    return nodes


def _leader(client: KazooClient, role: str, path: str) -> dict[str, Any]:
    record = _record(client, f"{path}/leader") or {}
    contenders = len(_children(client, f"{path}/election"))
    leader_id = record.get("id")
    return {
        "role": role,
        "id": None if leader_id is None else str(leader_id),
        "address": record.get("address"),
        "standbys": float(max(0, contenders - 1) if record else contenders),
    }


def read_cluster_health(client: KazooClient, paths: HealthPaths) -> dict[str, Any]:
    """Regions with their nodes and lag, and the leaders. Blocking (kazoo)."""
    sync = paths.sync.rstrip("/")
    names = sorted(
        set(_children(client, f"{sync}/members")) | set(_children(client, f"{sync}/gateways"))
    )
    regions = []
    for name in names:
        sync_nodes = _nodes(client, f"{sync}/members/{name}", "sync")
        lags = [n["replicaLagSeconds"] for n in sync_nodes if n["replicaLagSeconds"] is not None]
        regions.append(
            {
                "name": name,
                "primary": bool(sync_nodes) and not lags,
                "replicationLagSeconds": max(lags) if lags else None,
                "nodes": [*_nodes(client, f"{sync}/gateways/{name}", "gateway"), *sync_nodes],
            }
        )
    leaders = [
        _leader(client, "txn", paths.txn.rstrip("/")),
        _leader(client, "scheduler", paths.scheduler.rstrip("/")),
    ]
    return {"regions": regions, "leaders": leaders}


def zk_health_collector(
    zk: Callable[[], ZkSession | None], paths: HealthPaths
) -> Callable[[], Awaitable[dict[str, Any]]]:
    """A ``collect`` for :class:`~syncline.admin.HealthMonitor` over the session
    ``zk()`` returns (nothing to report until there is one)."""

    async def collect() -> dict[str, Any]:
        session = zk()
        if session is None:
            return {}
        return await asyncio.to_thread(read_cluster_health, session.client, paths)

    return collect
