"""Who is in a room right now: names, cursors and typing indicators.

These live in presence rooms, not in the database: a cursor moving ten times a
second costs no write, and a member whose client disconnects leaves at once (or,
if its connection died silently, when its membership expires). Rooms, messages and
documents stay in the database.

A client calls ``presence:update`` whenever its cursor moves or it starts or stops
typing (latest wins: it may skip positions), and again every few seconds while it
is idle, which also re-announces it after a reconnect.
"""

from __future__ import annotations

from typing import Any

from syncline import mutation, query, v

from ._shared import clean_name, load, resolve_author

CURSOR = v.object({"x": v.float64(), "y": v.float64()})


def _room(room_id: str) -> str:
    return f"room:{room_id}"


@mutation(
    args={
        "roomId": v.id("rooms"),
        "name": v.string(),
        "cursor": v.optional(v.nullable(CURSOR)),
        "typing": v.optional(v.boolean()),
        "authorId": v.optional(v.id("users")),
    }
)
async def update(
    ctx: Any,
    roomId: str,
    name: str,
    cursor: dict[str, float] | None = None,
    typing: bool | None = None,
    authorId: str | None = None,
) -> str:
    """Be in the room with this name, cursor and typing state; returns the caller's
    member id. Only existing rooms can be joined; ``authorId`` follows the same
    rules as elsewhere (a signed-in caller may only be their own user)."""
    await load(ctx, roomId, "room")
    user = await resolve_author(ctx, authorId)
    state = {
        "name": clean_name(name, "name"),
        "cursor": cursor,
        "typing": bool(typing),
        "userId": user,
    }
    member: str = await ctx.presence.join(_room(roomId), state)
    return member


@mutation(args={"roomId": v.id("rooms")})
async def leave(ctx: Any, roomId: str) -> None:
    """Leave the room now rather than when the connection closes."""
    await ctx.presence.leave(_room(roomId))


@query(args={"roomId": v.id("rooms")})
async def list(ctx: Any, roomId: str) -> Any:
    """Everyone in the room: ``{member, name, cursor, typing, userId}``, by member id."""
    members = await ctx.presence.members(_room(roomId))
    return [{"member": m["member"], **m["state"]} for m in members]


@query(args={"roomId": v.id("rooms")})
async def typing(ctx: Any, roomId: str) -> Any:
    """The names of those typing in the room, sorted."""
    members = await ctx.presence.members(_room(roomId))
    return sorted(m["state"]["name"] for m in members if m["state"]["typing"])
