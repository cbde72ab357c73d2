"""Scheduled work whose every effect can be counted: each hit key must end at exactly 1."""

import asyncio
from collections import Counter

from syncline import internal, internal_action, internal_mutation, mutation, query, v


@mutation(args={"prefix": v.string(), "start": v.float64(), "count": v.float64()})
async def schedule_hits(ctx, prefix, start, count):
    for i in range(int(start), int(start + count)):
        await ctx.scheduler.run_after(0, internal.jobs.hit, {"key": f"{prefix}{i}"})


@internal_mutation(args={"key": v.string()})
async def hit(ctx, key):
    doc = await ctx.db.query("hits").with_index("by_key", lambda q: q.eq("key", key)).unique()
    if doc is None:
        await ctx.db.insert("hits", {"key": key, "n": 1.0})
    else:
        await ctx.db.patch(doc["_id"], {"n": doc["n"] + 1.0})


@mutation(args={"key": v.string(), "seconds": v.float64()})
async def schedule_slow_action(ctx, key, seconds):
    return await ctx.scheduler.run_after(
        0, internal.jobs.slow_action, {"key": key, "seconds": seconds}
    )


@internal_action(args={"key": v.string(), "seconds": v.float64()})
async def slow_action(ctx, key, seconds):
    await ctx.run_mutation(internal.jobs.hit, {"key": f"{key}:started"})
    await asyncio.sleep(seconds)
    await ctx.run_mutation(internal.jobs.hit, {"key": f"{key}:finished"})


@query
async def hit_counts(ctx):
    """How many keys were hit how many times: {"1": 9999, "2": 1} means one ran twice."""
    counts = Counter(str(int(d["n"])) for d in await ctx.db.query("hits").collect())
    return dict(counts)


@query(args={"key": v.string()})
async def hits_of(ctx, key):
    doc = await ctx.db.query("hits").with_index("by_key", lambda q: q.eq("key", key)).unique()
    return doc["n"] if doc else 0.0


@query
async def job_states(ctx):
    jobs = await ctx.db.system.query("_scheduled_functions").collect()
    return dict(Counter(j["state"]["kind"] for j in jobs))


@query(args={"id": v.string()})
async def job(ctx, id):
    return await ctx.db.system.get(id)


@mutation(args={"text": v.string()})
async def schedule_shout(ctx, text):
    await ctx.scheduler.run_after(0, internal.bank.shout, {"text": text})
