"""Leader election over ZooKeeper, with step-down on session trouble.

A contender takes part with its own ZooKeeper session. Once elected it runs
``on_elected`` (for the txn service: take a new epoch, start committing); it
stays leader until its session is suspended or lost, it is fenced, or it
stops, and then runs ``on_deposed`` and closes the session, so its election
node and its leader announcement disappear at once. A new session then
contends again as a standby.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from kazoo.client import KazooState
from kazoo.exceptions import NodeExistsError

from syncline._errors import UnavailableError
from syncline.cluster._zk import ZkSession

log = logging.getLogger(__name__)


class LeaderElection:
    """Contend for leadership of ``path`` (e.g. ``/syncline/txn``)."""

    def __init__(
        self,
        hosts: str,
        path: str,
        identifier: str,
        *,
        session_timeout_seconds: float = 6.0,
        retry_seconds: float = 0.5,
    ) -> None:
        self._hosts = hosts
        self._path = path.rstrip("/")
        self._identifier = identifier
        self._session_timeout = session_timeout_seconds
        self._retry_seconds = retry_seconds
        self._lost: asyncio.Event | None = None
        self.session: ZkSession | None = None
        self.is_leader = False

    @property
    def leader_path(self) -> str:
        return f"{self._path}/leader"

    def step_down(self) -> None:
        """Give up leadership now (e.g. this leader was fenced)."""
        if self._lost is not None:
            self._lost.set()

    async def announce(self, info: dict[str, Any]) -> None:
        """Publish the leader's address: an ephemeral node that dies with the session."""
        assert self.session is not None
        client = self.session.client
        data = json.dumps(info).encode()

        def create() -> None:
            try:
                client.create(self.leader_path, data, ephemeral=True, makepath=True)
            except NodeExistsError:
                # Left by an earlier session of ours that has not expired yet.
                client.delete(self.leader_path)
                client.create(self.leader_path, data, ephemeral=True, makepath=True)

        await asyncio.to_thread(create)

    async def run(
        self,
        on_elected: Callable[[], Awaitable[None]],
        on_deposed: Callable[[], Awaitable[None]],
        stop: asyncio.Event,
    ) -> None:
        """Contend, lead and step down, over and over, until ``stop`` is set."""
        while not stop.is_set():
            try:
                await self._one_term(on_elected, on_deposed, stop)
            except UnavailableError as exc:
                log.warning("%s; retrying", exc.message)
            if not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._retry_seconds)

    async def _one_term(
        self,
        on_elected: Callable[[], Awaitable[None]],
        on_deposed: Callable[[], Awaitable[None]],
        stop: asyncio.Event,
    ) -> None:
        session = ZkSession(self._hosts, session_timeout_seconds=self._session_timeout)
        lost = asyncio.Event()
        self._lost = lost
        session.on_state(
            lambda state: lost.set() if state in (KazooState.SUSPENDED, KazooState.LOST) else None
        )
        await session.start()
        self.session = session
        loop = asyncio.get_running_loop()
        elected = asyncio.Event()
        release = threading.Event()
        election = session.client.Election(f"{self._path}/election", self._identifier)

        def lead() -> None:  # kazoo's thread, while holding the election lock
            loop.call_soon_threadsafe(elected.set)
            release.wait()

        def contend() -> None:
            try:
                election.run(lead)
            except Exception as exc:  # the session ended under us: nothing to release
                log.debug("election ended: %r", exc)

        contender = asyncio.ensure_future(asyncio.to_thread(contend))
        try:
            await _first(elected, lost, stop)
            if elected.is_set() and not lost.is_set() and not stop.is_set():
                self.is_leader = True
                try:
                    await on_elected()
                except Exception:
                    log.exception("taking over leadership failed; stepping down")
                    lost.set()
                await _first(lost, stop)
                self.is_leader = False
                await on_deposed()
        finally:
            self.is_leader = False
            release.set()
            election.cancel()
            self.session = None
            await session.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(contender, 10)


async def _first(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
