"""Echo functions for exact value round trips through every client."""

from syncline import action, mutation, query, v


@query
async def echo(ctx, value=None):
    return value


@mutation(args={"payload": v.any()})
async def store(ctx, payload):
    doc_id = await ctx.db.insert("blobs", {"payload": payload})
    return (await ctx.db.get(doc_id))["payload"]


@action
async def echo_action(ctx, value=None):
    return await ctx.run_query("values:echo", {"value": value})


@query(args={"n": v.int64(), "f": v.float64(), "b": v.bytes(), "s": v.string()})
async def typed(ctx, n, f, b, s):
    return {"n": n + 1, "f": f * 2, "b": b + b"!", "s": s.upper()}
