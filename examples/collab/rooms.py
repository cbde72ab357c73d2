"""Rooms: creation with unique names, listings and activity."""

from __future__ import annotations

from itertools import islice
from typing import Any

from syncline import mutation, query, v

from ._shared import Doc, app_error, clean_name, limit_arg, load, now_ms, resolve_author

# The query named ``list`` below shadows the builtin in this module: code here uses
# comprehensions and ``sorted`` instead.

MAX_LISTED = 200
DEFAULT_WINDOW_MINUTES = 5.0
#: Counting stops here; the activity says so rather than read a whole busy room.
MAX_COUNTED_MESSAGES = 1000
#: Recent messages scanned, and distinct authors reported, by ``activity``.
MAX_RECENT_MESSAGES = 500
MAX_ACTIVE_AUTHORS = 50


@mutation(args={"name": v.string(), "createdBy": v.optional(v.id("users"))}, returns=v.id("rooms"))
async def create(ctx: Any, name: str, createdBy: str | None = None) -> str:
    """Create a room; ``ROOM_EXISTS`` if the name is taken. The creator defaults to the
    signed-in caller's user, and may be absent."""
    name = clean_name(name, "room name")
    existing: Doc | None = (
        await ctx.db.query("rooms").with_index("by_name", lambda q: q.eq("name", name)).first()
    )
    if existing is not None:
        raise app_error(
            "ROOM_EXISTS", f"a room named {name!r} exists", name=name, roomId=existing["_id"]
        )
    room: Doc = {"name": name, "createdAt": now_ms()}
    creator = await resolve_author(ctx, createdBy)
    if creator is not None:
        room["createdBy"] = creator
    room_id: str = await ctx.db.insert("rooms", room)
    return room_id


@query(args={"limit": v.optional(v.float64())})
async def list(ctx: Any, limit: float | None = None) -> Any:
    """Rooms in name order, at most ``limit`` (default and cap 200)."""
    count = limit_arg(limit, default=MAX_LISTED, maximum=MAX_LISTED)
    return await ctx.db.query("rooms").with_index("by_name", lambda q: q).take(count)


@query(args={"roomId": v.id("rooms")})
async def get(ctx: Any, roomId: str) -> Any:
    """A room, or None if there is none by that id."""
    return await ctx.db.get(roomId)


@query(
    args={
        "roomId": v.id("rooms"),
        "windowMinutes": v.optional(v.float64()),
        "now": v.optional(v.float64()),
    }
)
async def activity(
    ctx: Any, roomId: str, windowMinutes: float | None = None, now: float | None = None
) -> Any:
    """How busy a room is: its message count (up to 1000, ``messageCountCapped`` says
    whether there are more), its last message time, and the users who wrote in the last
    ``windowMinutes`` (default 5), most recent first.

    Pass ``now`` (ms, rounded to a minute, say) to make the window a function of the
    arguments, so subscriptions stay cacheable and move on when the client says so.
    """
    room = await load(ctx, roomId, "room")
    minutes = DEFAULT_WINDOW_MINUTES if windowMinutes is None else windowMinutes
    if not minutes > 0:
        raise app_error("INVALID_ARGUMENT", "windowMinutes must be positive", field="windowMinutes")
    since = (now_ms() if now is None else now) - minutes * 60_000

    counted = await _messages(ctx, roomId).take(MAX_COUNTED_MESSAGES + 1)
    last: Doc | None = await _messages(ctx, roomId).order("desc").first()
    recent = await _messages(ctx, roomId, since=since).order("desc").take(MAX_RECENT_MESSAGES)
    return {
        "roomId": roomId,
        "name": room["name"],
        "messageCount": float(min(len(counted), MAX_COUNTED_MESSAGES)),
        "messageCountCapped": len(counted) > MAX_COUNTED_MESSAGES,
        "lastMessageAt": None if last is None else last["timestamp"],
        "activeAuthors": await _authors(ctx, recent),
        "windowMinutes": float(minutes),
    }


@query(args={"limit": v.optional(v.float64())})
async def summary(ctx: Any, limit: float | None = None) -> Any:
    """Rooms with their last message time, most recently active first (silent rooms
    last, by name). One read per room, so it stays cheap for a lobby screen."""
    count = limit_arg(limit, default=50, maximum=MAX_LISTED)
    rooms = await ctx.db.query("rooms").with_index("by_name", lambda q: q).take(count)
    rows = []
    for room in rooms:
        last: Doc | None = await _messages(ctx, room["_id"]).order("desc").first()
        rows.append(
            {
                "roomId": room["_id"],
                "name": room["name"],
                "lastMessageAt": None if last is None else last["timestamp"],
            }
        )
    # Python's sort is stable, so rooms with equal times keep their name order.
    return sorted(rows, key=lambda row: -(row["lastMessageAt"] or float("-inf")))


def _messages(ctx: Any, room_id: str, *, since: float | None = None) -> Any:
    """A query over a room's messages in time order, from ``since`` if given."""

    def bounds(q: Any) -> Any:
        q = q.eq("roomId", room_id)
        return q if since is None else q.gte("timestamp", since)

    return ctx.db.query("messages").with_index("by_room_timestamp", bounds)


async def _authors(ctx: Any, messages: Any) -> Any:
    """The distinct authors of ``messages`` (anonymous ones skipped), in message order."""
    author_ids = dict.fromkeys(m["authorId"] for m in messages if m.get("authorId") is not None)
    authors = []
    for author_id in islice(author_ids, MAX_ACTIVE_AUTHORS):
        user: Doc | None = await ctx.db.get(author_id)
        if user is not None:
            authors.append({"userId": author_id, "name": user["name"], "status": user["status"]})
    return authors
