"""Transfers that must conserve money and never overdraw, and exact counters."""

from syncline import AppError, mutation, query, v


async def _account(ctx, name):
    return (
        await ctx.db.query("accounts").with_index("by_name", lambda q: q.eq("name", name)).unique()
    )


@mutation(args={"name": v.string(), "balance": v.float64()})
async def open_account(ctx, name, balance):
    return await ctx.db.insert("accounts", {"name": name, "balance": balance})


@mutation(args={"source": v.string(), "target": v.string(), "amount": v.float64()})
async def transfer(ctx, source, target, amount):
    src, dst = await _account(ctx, source), await _account(ctx, target)
    if src is None or dst is None:
        raise AppError({"code": "NO_ACCOUNT"})
    if src["balance"] < amount:
        raise AppError({"code": "INSUFFICIENT_FUNDS"})
    await ctx.db.patch(src["_id"], {"balance": src["balance"] - amount})
    await ctx.db.patch(dst["_id"], {"balance": dst["balance"] + amount})


@query
async def balances(ctx):
    return {a["name"]: a["balance"] for a in await ctx.db.query("accounts").collect()}


@mutation(args={"name": v.string()})
async def increment(ctx, name):
    doc = (
        await ctx.db.query("counters").with_index("by_name", lambda q: q.eq("name", name)).unique()
    )
    if doc is None:
        await ctx.db.insert("counters", {"name": name, "value": 1.0})
        return 1.0
    await ctx.db.patch(doc["_id"], {"value": doc["value"] + 1.0})
    return doc["value"] + 1.0


@query(args={"name": v.string()})
async def counter(ctx, name):
    doc = (
        await ctx.db.query("counters").with_index("by_name", lambda q: q.eq("name", name)).unique()
    )
    return doc["value"] if doc else 0.0


@mutation(args={"key": v.string()})
async def record(ctx, key):
    return await ctx.db.insert("events", {"key": key})


@query
async def event_keys(ctx):
    return sorted(e["key"] for e in await ctx.db.query("events").collect())


@mutation(args={"text": v.string()})
async def shout(ctx, text):
    print(text)
