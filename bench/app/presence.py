"""Cursors in a room: as presence (no database write), and the same traffic stored
as documents, the baseline bench/presence.py compares with."""

from syncline import mutation, query, v


@mutation(args={"room": v.string(), "state": v.any()})
async def move(ctx, room, state):
    await ctx.presence.join(room, state)


@query(args={"room": v.string()})
async def members(ctx, room):
    return await ctx.presence.members(room)


@mutation(args={"room": v.string(), "member": v.string(), "state": v.any()})
async def move_stored(ctx, room, member, state):
    cursor = (
        await ctx.db.query("cursors")
        .with_index("by_room_member", lambda q: q.eq("room", room).eq("member", member))
        .unique()
    )
    if cursor is None:
        await ctx.db.insert("cursors", {"room": room, "member": member, "state": state})
    else:
        await ctx.db.patch(cursor["_id"], {"state": state})


@query(args={"room": v.string()})
async def members_stored(ctx, room):
    cursors = (
        await ctx.db.query("cursors")
        .with_index("by_room_member", lambda q: q.eq("room", room))
        .collect()
    )
    return [{"member": c["member"], "state": c["state"]} for c in cursors]
