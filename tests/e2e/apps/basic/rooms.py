"""Presence rooms: who is here, their cursors, and chat that is never stored.

Rooms named ``staff:...`` admit signed-in callers only: functions decide who may
join and read a room.
"""

from syncline import AppError, internal, internal_mutation, mutation, query, v


async def _admit(ctx, room):
    if room.startswith("staff:") and await ctx.auth.get_user_identity() is None:
        raise AppError({"code": "FORBIDDEN", "room": room})


@mutation(args={"room": v.string(), "state": v.any()})
async def join(ctx, room, state):
    await _admit(ctx, room)
    return await ctx.presence.join(room, state)


@mutation(args={"room": v.string()})
async def leave(ctx, room):
    await ctx.presence.leave(room)


@mutation(args={"room": v.string(), "text": v.string()})
async def say(ctx, room, text):
    await _admit(ctx, room)
    return await ctx.presence.broadcast(room, {"text": text})


@mutation(args={"room": v.string(), "state": v.any()})
async def join_then_fail(ctx, room, state):
    await ctx.presence.join(room, state)
    raise AppError("no")


@query(args={"room": v.string()})
async def members(ctx, room):
    await _admit(ctx, room)
    return await ctx.presence.members(room)


@query(args={"room": v.string()})
async def messages(ctx, room):
    await _admit(ctx, room)
    return await ctx.presence.messages(room)


@mutation(args={"room": v.string(), "text": v.string()})
async def announce_later(ctx, room, text):
    await ctx.scheduler.run_after(0, internal.rooms.announce, {"room": room, "text": text})


@internal_mutation(args={"room": v.string(), "text": v.string()})
async def announce(ctx, room, text):
    await ctx.presence.broadcast(room, {"text": text, "from": "scheduler"})
