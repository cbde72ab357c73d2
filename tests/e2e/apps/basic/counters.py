"""A counter: the classic lost-update test (every increment reads then writes)."""

from syncline import internal_mutation, mutation, query, v


async def _get(ctx, name):
    return (
        await ctx.db.query("counters").with_index("by_name", lambda q: q.eq("name", name)).unique()
    )


@query(args={"name": v.string()})
async def get(ctx, name):
    doc = await _get(ctx, name)
    return doc["value"] if doc else 0.0


@mutation(args={"name": v.string(), "by": v.optional(v.float64())})
async def increment(ctx, name, by=1.0):
    doc = await _get(ctx, name)
    if doc is None:
        await ctx.db.insert("counters", {"name": name, "value": by})
        return by
    await ctx.db.patch(doc["_id"], {"value": doc["value"] + by})
    return doc["value"] + by


@internal_mutation(args={"name": v.string()})
async def reset(ctx, name):
    doc = await _get(ctx, name)
    if doc is not None:
        await ctx.db.patch(doc["_id"], {"value": 0.0})
