"""The ``ctx`` objects handed to queries, mutations and actions."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from syncline.auth import UserIdentity
from syncline.database import DatabaseReader, DatabaseWriter, Transaction
from syncline.jobs import ActionScheduler, MutationScheduler
from syncline.presence import PresenceReader, PresenceWriter
from syncline.ratelimit import FunctionRateLimiter
from syncline.runtime._system import HEALTH_FEED

if TYPE_CHECKING:
    from syncline.runtime._deployment import Deployment
    from syncline.runtime._runner import FunctionRunner
    from syncline.runtime._system import SystemServices


@dataclass(frozen=True)
class Identity:
    """Who is calling: a verified user, an admin key holder, both, or nobody."""

    user: UserIdentity | None = None
    admin: bool = False
    admin_scopes: frozenset[str] | None = None
    """What an admin key allows (None: everything)."""

    def can(self, scope: str) -> bool:
        """Whether an admin key allowing ``scope`` (deploy, read, run) was presented."""
        return self.admin and (self.admin_scopes is None or scope in self.admin_scopes)

    @property
    def cache_key(self) -> str:
        """Separates results of queries run for different callers.

        It covers every claim a function can see, not just the user: two tokens
        of one user with different claims (a role changed) must not share results.
        """
        if self.user is None:
            return "admin" if self.admin else "anonymous"
        claims = json.dumps(self.user.to_convex(), sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(claims.encode()).hexdigest()[:32]
        return f"{'admin' if self.admin else 'user'}:{self.user.token_identifier}:{digest}"

    @property
    def expires_at(self) -> float | None:
        """The token's ``exp`` (seconds since the epoch), if it has one."""
        exp = self.user.claims.get("exp") if self.user else None
        return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


ANONYMOUS = Identity()


class Auth:
    """``ctx.auth``; remembers whether the function looked at the identity."""

    def __init__(self, identity: Identity) -> None:
        self._identity = identity
        self.read = False

    async def get_user_identity(self) -> dict[str, Any] | None:
        """The caller's identity as Convex's UserIdentity object, or None."""
        self.read = True
        return self._identity.user.to_convex() if self._identity.user else None


class QueryCtx:
    """``ctx`` of a query: read-only ``db``, ``auth``, and ``presence`` rooms."""

    def __init__(self, db: DatabaseReader, auth: Auth, presence: PresenceReader) -> None:
        self.db = db
        self.auth = auth
        self.presence = presence


class MutationCtx:
    """``ctx`` of a mutation: ``db`` reads and writes in one transaction,
    ``scheduler`` schedules functions in that same transaction, ``presence``
    changes rooms once it commits, and ``rate_limiter`` enforces the app's limits."""

    def __init__(
        self,
        db: DatabaseWriter,
        auth: Auth,
        scheduler: MutationScheduler,
        presence: PresenceWriter,
        rate_limiter: FunctionRateLimiter,
    ) -> None:
        self.db = db
        self.auth = auth
        self.scheduler = scheduler
        self.presence = presence
        self.rate_limiter = rate_limiter


RunFn = Callable[[object, dict[str, Any] | None], Awaitable[Any]]


class ActionCtx:
    """``ctx`` of an action: no database, but it can call other functions, schedule
    them, and take from the app's rate limits."""

    def __init__(
        self,
        runner: FunctionRunner,
        identity: Identity,
        depth: int,
        scheduler: ActionScheduler,
        parent_job_id: str | None,
        rate_limiter: FunctionRateLimiter,
        *,
        trusted: bool = False,
    ) -> None:
        """``trusted``: the action is Syncline's own, so it may call system functions."""
        self.auth = Auth(identity)
        self._trusted = trusted
        self.scheduler = scheduler
        self.rate_limiter = rate_limiter
        self._runner = runner
        self._identity = identity
        self._depth = depth
        self._parent_job_id = parent_job_id

    async def run_query(self, ref: object, args: dict[str, Any] | None = None) -> Any:
        result = await self._runner.run_query_internal(ref, args or {}, self._identity)
        return result.value

    async def run_mutation(self, ref: object, args: dict[str, Any] | None = None) -> Any:
        result = await self._runner.run_mutation_internal(
            ref,
            args or {},
            self._identity,
            parent_job_id=self._parent_job_id,
            trusted=self._trusted,
        )
        return result.value

    async def run_action(self, ref: object, args: dict[str, Any] | None = None) -> Any:
        result = await self._runner.run_action_internal(
            ref,
            args or {},
            self._identity,
            depth=self._depth + 1,
            parent_job_id=self._parent_job_id,
            trusted=self._trusted,
        )
        return result.value


class SystemQueryCtx(QueryCtx):
    """``ctx`` of a system query: also the live deployment and the cluster's health."""

    def __init__(
        self,
        db: DatabaseReader,
        auth: Auth,
        presence: PresenceReader,
        *,
        deployment: Deployment,
        services: SystemServices,
    ) -> None:
        super().__init__(db, auth, presence)
        self.deployment = deployment
        self.mode = services.mode
        self.versions = services.versions()
        """The deployed versions, oldest first."""
        self._health = services.health
        self.feeds: set[str] = set()
        """Feeds read: a subscription re-runs when one changes."""

    def health(self) -> dict[str, Any] | None:
        """The cluster as this node sees it (None where nothing reports it)."""
        if self._health is None:
            return None
        self.feeds.add(HEALTH_FEED)
        return self._health.snapshot()


class SystemMutationCtx(MutationCtx):
    """``ctx`` of a system mutation: also the live deployment."""

    def __init__(
        self,
        db: DatabaseWriter,
        auth: Auth,
        scheduler: MutationScheduler,
        presence: PresenceWriter,
        rate_limiter: FunctionRateLimiter,
        *,
        deployment: Deployment,
        tx: Transaction,
    ) -> None:
        super().__init__(db, auth, scheduler, presence, rate_limiter)
        self.deployment = deployment
        self.tx = tx
        """The transaction itself: Syncline's own functions may write its own tables."""
