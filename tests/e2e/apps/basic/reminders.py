from syncline import internal, internal_mutation, mutation, query, v


@mutation(args={"text": v.string(), "delay": v.float64()})
async def remind(ctx, text, delay):
    return await ctx.scheduler.run_after(delay, internal.reminders.deliver, {"text": text})


@mutation(args={"id": v.string()})
async def cancel(ctx, id):
    await ctx.scheduler.cancel(id)


@internal_mutation(args={"text": v.string()})
async def deliver(ctx, text):
    await ctx.db.insert("reminders", {"text": text})


@query
async def delivered(ctx):
    return [r["text"] for r in await ctx.db.query("reminders").collect()]


@query(args={"id": v.string()})
async def status(ctx, id):
    job = await ctx.db.system.get(id)
    return job["state"]["kind"] if job else None
