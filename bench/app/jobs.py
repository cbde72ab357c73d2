"""Scheduled jobs for bench/scheduler.py: each records when it was due and when it started."""

import time

from syncline import internal, internal_mutation, mutation, query, v


@mutation(args={"run": v.string(), "count": v.float64(), "at": v.float64()})
async def schedule_burst(ctx, run, count, at):
    """``count`` jobs all due at ``at`` (epoch ms)."""
    for _ in range(int(count)):
        await ctx.scheduler.run_at(at, internal.jobs.tick, {"run": run, "due": at})


@mutation(args={"run": v.string()})
async def schedule_now(ctx, run):
    """One job due now."""
    due = time.time() * 1000.0
    await ctx.scheduler.run_at(due, internal.jobs.tick, {"run": run, "due": due})


@internal_mutation(args={"run": v.string(), "due": v.float64()})
async def tick(ctx, run, due):
    await ctx.db.insert("ticks", {"run": run, "due": due, "started": time.time() * 1000.0})


@query(args={"run": v.string()})
async def ticks(ctx, run):
    """``[due, started]`` of every job of a run that has run."""
    docs = await ctx.db.query("ticks").with_index("by_run", lambda q: q.eq("run", run)).collect()
    return [[d["due"], d["started"]] for d in docs]
