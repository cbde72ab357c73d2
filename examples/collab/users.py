"""Users and their presence: join by name, heartbeats, status and who is around."""

from __future__ import annotations

from typing import Any

from syncline import mutation, query, v

from ._shared import (
    Doc,
    app_error,
    clean_name,
    limit_arg,
    now_ms,
    public_user,
    signed_in_user,
    user_to_act_as,
)
from .schema import USER_STATUS

#: A user whose last heartbeat is older than this is no longer listed as around.
PRESENCE_TIMEOUT_MS = 60_000.0
MAX_LISTED = 200


@mutation(args={"name": v.string()}, returns=v.id("users"))
async def join(ctx: Any, name: str) -> str:
    """Become user ``name`` (created if new) and go online; returns the user id.

    A signed-in caller binds the user to their identity, and joining again under
    another name renames it. A name bound to another identity is ``NAME_TAKEN``.
    """
    name = clean_name(name, "user name")
    named: Doc | None = (
        await ctx.db.query("users").with_index("by_name", lambda q: q.eq("name", name)).unique()
    )
    own = await signed_in_user(ctx)
    if named is not None and not _may_take(named, own):
        raise app_error("NAME_TAKEN", f"the name {name!r} is taken", name=name)

    fields: Doc = {"name": name, "status": "online", "lastSeen": now_ms()}
    identity = await ctx.auth.get_user_identity()
    if identity is not None:
        fields["tokenIdentifier"] = identity["tokenIdentifier"]
    user = own if own is not None else named
    if user is None:
        user_id: str = await ctx.db.insert("users", fields)
        return user_id
    await ctx.db.patch(user["_id"], fields)
    return str(user["_id"])


@mutation(args={"userId": v.id("users"), "status": USER_STATUS}, returns=v.null())
async def set_status(ctx: Any, userId: str, status: str) -> None:
    """Set a user's status ("online", "away" or "offline")."""
    await user_to_act_as(ctx, userId)
    await ctx.db.patch(userId, {"status": status, "lastSeen": now_ms()})


@mutation(args={"userId": v.id("users")}, returns=v.null())
async def heartbeat(ctx: Any, userId: str) -> None:
    """Record that the user is still here; an offline user comes back online."""
    user = await user_to_act_as(ctx, userId)
    fields: Doc = {"lastSeen": now_ms()}
    if user["status"] == "offline":
        fields["status"] = "online"
    await ctx.db.patch(userId, fields)


@query(args={"now": v.optional(v.float64()), "limit": v.optional(v.float64())})
async def list_online(ctx: Any, now: float | None = None, limit: float | None = None) -> Any:
    """Users online or away whose last heartbeat is recent, sorted by name.

    Pass ``now`` (ms, rounded to a few seconds) to make the result a function of the
    arguments: a subscription then moves on when the client changes ``now``, not only
    when a user writes.
    """
    cutoff = (now_ms() if now is None else now) - PRESENCE_TIMEOUT_MS
    count = limit_arg(limit, default=MAX_LISTED, maximum=MAX_LISTED)
    users = await _seen_since(ctx, "online", cutoff, count)
    users += await _seen_since(ctx, "away", cutoff, count)
    return [public_user(user) for user in sorted(users, key=lambda u: u["name"])[:count]]


@query(args={"userId": v.id("users")})
async def get(ctx: Any, userId: str) -> Any:
    """A user, or None if there is none by that id."""
    user: Doc | None = await ctx.db.get(userId)
    return None if user is None else public_user(user)


def _may_take(named: Doc, own: Doc | None) -> bool:
    """Whether the caller may become ``named``: it is their own user, or, while they
    have none, a user nobody signed in has bound."""
    if own is not None:
        return bool(named["_id"] == own["_id"])
    return named.get("tokenIdentifier") is None


async def _seen_since(ctx: Any, status: str, cutoff: float, count: int) -> list[Doc]:
    """Up to ``count`` users with ``status`` seen at or after ``cutoff``, latest first."""
    users: list[Doc] = (
        await ctx.db.query("users")
        .with_index("by_status_last_seen", lambda q: q.eq("status", status).gte("lastSeen", cutoff))
        .order("desc")
        .take(count)
    )
    return users
