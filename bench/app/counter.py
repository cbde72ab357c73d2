"""The benchmark app: one insert mutation and one indexed query."""

from syncline import mutation, query, v


@mutation(args={"key": v.string()})
async def insert(ctx, key):
    return await ctx.db.insert("events", {"key": key, "n": 1.0})


@query(args={"key": v.string()})
async def by_key(ctx, key):
    # Newest first, so every insert changes the result (a subscriber sees its id arrive).
    return await (
        ctx.db.query("events")
        .with_index("by_key", lambda q: q.eq("key", key))
        .order("desc")
        .take(5)
    )
