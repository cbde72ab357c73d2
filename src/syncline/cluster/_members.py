"""Live sync nodes of a region, from ZooKeeper, and which one serves a session.

Sync nodes register as ephemeral children of ``{zk_path}/members/{region}``
holding ``{"address", "region", "sessions"}`` (and, in a region with a replica,
``reads`` and ``replica_lag_seconds``); gateways as children of
``{zk_path}/gateways/{region}``, for the health view. Gateways watch that directory
and route each session by rendezvous (highest random weight) hashing over the
live members: a session's node stays the same while that node lives, and when
one node leaves only its sessions move, spread over the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Collection
from dataclasses import dataclass

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from syncline._errors import UnavailableError
from syncline.cluster._zk import ZkSession

log = logging.getLogger(__name__)


def publish_ephemeral(client: KazooClient, path: str, data: bytes) -> bool:
    """Make ``path`` this session's ephemeral node holding ``data``; True if it had to
    be created. Blocking (kazoo): call it on a worker thread."""
    session_id = client.client_id[0] if client.client_id else None
    try:
        current, stat = client.get(path)
    except NoNodeError:
        current, stat = None, None
    if stat is not None and stat.ephemeralOwner == session_id:
        if current != data:
            client.set(path, data, version=stat.version)
        return False
    if stat is not None:
        # Left by a session of ours that has not expired on the server yet.
        with contextlib.suppress(NoNodeError):
            client.delete(path)
    client.create(path, data, ephemeral=True, makepath=True)
    return True


@dataclass(frozen=True)
class Member:
    identifier: str
    address: str
    sessions: int = 0


def rendezvous_pick(key: str, members: Collection[Member]) -> Member | None:
    """The member with the highest hash of (key, member id); None if there are none."""
    best: Member | None = None
    best_score = b""
    for member in members:
        score = hashlib.blake2b(f"{key}\x00{member.identifier}".encode(), digest_size=8).digest()
        if best is None or score > best_score:
            best, best_score = member, score
    return best


class SyncMembers:
    """The sync nodes of one region, kept current by a ZooKeeper children watch."""

    def __init__(self, zk: ZkSession, zk_path: str, region: str) -> None:
        self._zk = zk
        self._path = f"{zk_path.rstrip('/')}/members/{region}"
        self.region = region
        self._members: dict[str, Member] = {}
        self._changed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def members(self) -> list[Member]:
        return list(self._members.values())

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        client = self._zk.client
        await asyncio.to_thread(client.ensure_path, self._path)

        def watch(children: list[str]) -> None:  # kazoo's thread
            members = {}
            for child in children:
                try:
                    data, _ = client.get(f"{self._path}/{child}")
                    info = json.loads(data)
                    members[child] = Member(child, str(info["address"]), int(info["sessions"]))
                except (NoNodeError, ValueError, KeyError, TypeError):
                    continue  # gone meanwhile, or not a member's record
            loop = self._loop
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(self._update, members)

        await asyncio.to_thread(client.ChildrenWatch, self._path, watch)

    def _update(self, members: dict[str, Member]) -> None:
        if set(members) != set(self._members):
            log.info(
                "sync members of %s: %s", self.region, sorted(m.address for m in members.values())
            )
        self._members = members
        self._changed.set()

    def pick(self, key: str, *, avoid: Collection[str] = ()) -> Member | None:
        """The member for ``key`` by rendezvous hashing, skipping addresses in ``avoid``."""
        return rendezvous_pick(key, [m for m in self._members.values() if m.address not in avoid])

    async def wait_pick(self, key: str, *, avoid: Collection[str], within: float) -> Member:
        """``pick``, waiting up to ``within`` seconds for a member to appear."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            member = self.pick(key, avoid=avoid)
            if member is not None:
                return member
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise UnavailableError(f"no sync node of region {self.region!r} is available")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))
