"""The txn benchmark app: a mutation that inserts one document."""

from syncline import mutation, v


@mutation(args={"key": v.string()})
async def insert(ctx, key):
    return await ctx.db.insert("events", {"key": key})
