"""Chat messages in rooms: sending, the latest messages, and pages for infinite scroll."""

from __future__ import annotations

from typing import Any

from syncline import mutation, query, v

from ._shared import app_error, limit_arg, load, now_ms, resolve_author

# The query named ``list`` below shadows the builtin in this module.

MAX_BODY_LENGTH = 4000
DEFAULT_LATEST = 50
MAX_LATEST = 200
MAX_PAGE = 100

#: What Convex's ``usePaginatedQuery`` sends. Only ``numItems`` and ``cursor`` are used;
#: the rest is accepted so that every client version validates.
PAGINATION_OPTS = v.object(
    {
        "numItems": v.float64(),
        "cursor": v.nullable(v.string()),
        "endCursor": v.optional(v.nullable(v.string())),
        "id": v.optional(v.float64()),
        "maximumRowsRead": v.optional(v.float64()),
        "maximumBytesRead": v.optional(v.float64()),
    }
)


@mutation(
    args={"roomId": v.id("rooms"), "body": v.string(), "authorId": v.optional(v.id("users"))},
    returns=v.id("messages"),
)
async def send(ctx: Any, roomId: str, body: str, authorId: str | None = None) -> str:
    """Post ``body`` to a room; returns the message id.

    The body must have a non-blank character and at most 4000 characters
    (``INVALID_ARGUMENT``); the room must exist (``NOT_FOUND``). The author is
    ``authorId``, else the signed-in caller's user, else nobody.
    """
    if not body.strip():
        raise app_error("INVALID_ARGUMENT", "a message cannot be blank", field="body")
    if len(body) > MAX_BODY_LENGTH:
        raise app_error(
            "INVALID_ARGUMENT",
            f"a message has at most {MAX_BODY_LENGTH} characters, this one {len(body)}",
            field="body",
            maxLength=float(MAX_BODY_LENGTH),
        )
    await load(ctx, roomId, "room")
    message = {"roomId": roomId, "body": body, "timestamp": now_ms()}
    author = await resolve_author(ctx, authorId)
    if author is not None:
        message["authorId"] = author
    message_id: str = await ctx.db.insert("messages", message)
    return message_id


@query(args={"roomId": v.id("rooms"), "limit": v.optional(v.float64())})
async def list(ctx: Any, roomId: str, limit: float | None = None) -> Any:
    """The latest ``limit`` messages of a room (default 50, cap 200), oldest first."""
    count = limit_arg(limit, default=DEFAULT_LATEST, maximum=MAX_LATEST)
    latest = await _in_room(ctx, roomId).order("desc").take(count)
    return latest[::-1]


@query(args={"roomId": v.id("rooms"), "paginationOpts": PAGINATION_OPTS})
async def paginated(ctx: Any, roomId: str, paginationOpts: dict[str, Any]) -> Any:
    """A page of a room's messages, newest first, for ``usePaginatedQuery``.

    Returns ``{"page", "isDone", "continueCursor"}``; pages hold at most 100 messages.
    """
    count = limit_arg(paginationOpts["numItems"], default=DEFAULT_LATEST, maximum=MAX_PAGE)
    return (
        await _in_room(ctx, roomId)
        .order("desc")
        .paginate({"numItems": count, "cursor": paginationOpts["cursor"]})
    )


def _in_room(ctx: Any, room_id: str) -> Any:
    return ctx.db.query("messages").with_index(
        "by_room_timestamp", lambda q: q.eq("roomId", room_id)
    )
