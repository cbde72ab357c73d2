"""Presence rooms: who is looking at the map, and where."""

from syncline import mutation, query, v


@mutation(args={"room": v.string(), "state": v.any()})
async def join(ctx, room, state):
    return await ctx.presence.join(room, state)


@mutation(args={"room": v.string()})
async def leave(ctx, room):
    await ctx.presence.leave(room)


@query(args={"room": v.string()})
async def members(ctx, room):
    return await ctx.presence.members(room)
