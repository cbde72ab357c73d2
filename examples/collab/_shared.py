"""Helpers shared by collab's function modules: the clock, lookups, errors and the caller."""

from __future__ import annotations

import time
from typing import Any

from syncline import AppError

Doc = dict[str, Any]


def now_ms() -> float:
    """Milliseconds since the epoch, the unit of every timestamp in this app."""
    return time.time() * 1000


def app_error(code: str, message: str, **details: Any) -> AppError:
    """An error whose data reaches the client as ``{"code", "message", **details}``."""
    return AppError({"code": code, "message": message, **details})


async def load(ctx: Any, doc_id: str, kind: str) -> Doc:
    """Read a document, or raise ``NOT_FOUND`` naming what was missing."""
    doc: Doc | None = await ctx.db.get(doc_id)
    if doc is None:
        raise app_error("NOT_FOUND", f"{kind} {doc_id} does not exist", id=doc_id)
    return doc


def clean_name(value: str, what: str, *, max_length: int = 64) -> str:
    """``value`` without surrounding blanks; ``INVALID_ARGUMENT`` if empty or too long."""
    name = value.strip()
    if not name or len(name) > max_length:
        raise app_error(
            "INVALID_ARGUMENT", f"{what} must be 1 to {max_length} characters", field=what
        )
    return name


def limit_arg(value: float | None, *, default: int, maximum: int) -> int:
    """A client's page size (a JS number): at least 1, capped at ``maximum``."""
    if value is None:
        return default
    if not value >= 1:  # also catches NaN
        raise app_error("INVALID_ARGUMENT", f"limit must be at least 1, got {value}")
    return int(min(value, maximum))


def public_user(user: Doc) -> Doc:
    """A user as other clients may see it: without the identity it is bound to."""
    return {key: value for key, value in user.items() if key != "tokenIdentifier"}


async def signed_in_user(ctx: Any) -> Doc | None:
    """The user joined under the caller's identity; None if anonymous or not joined yet."""
    identity = await ctx.auth.get_user_identity()
    if identity is None:
        return None
    token = identity["tokenIdentifier"]
    user: Doc | None = (
        await ctx.db.query("users")
        .with_index("by_token", lambda q: q.eq("tokenIdentifier", token))
        .unique()
    )
    return user


async def user_to_act_as(ctx: Any, user_id: str) -> Doc:
    """Load a user the caller wants to act as; ``FORBIDDEN`` if bound to another identity.

    Users who joined anonymously are open to anyone: that is the demo mode.
    """
    user = await load(ctx, user_id, "user")
    owner = user.get("tokenIdentifier")
    if owner is not None:
        identity = await ctx.auth.get_user_identity()
        if identity is None or identity["tokenIdentifier"] != owner:
            raise app_error(
                "FORBIDDEN", f"user {user_id} belongs to another identity", userId=user_id
            )
    return user


async def resolve_author(ctx: Any, user_id: str | None) -> str | None:
    """Who to record as the author of a write.

    ``user_id`` if given (and the caller may act as it), else the signed-in caller's
    user, else None: the write is anonymous.
    """
    if user_id is not None:
        user = await user_to_act_as(ctx, user_id)
    else:
        user = await signed_in_user(ctx)
    return None if user is None else str(user["_id"])
