"""Every accepted form of function reference, from an action."""

from syncline import action, api, internal, v

from . import counters


@action(args={"name": v.string()})
async def all_forms(ctx, name):
    by_string = await ctx.run_query("counters:get", {"name": name})
    await ctx.run_mutation(counters.increment, {"name": name})
    by_object = await ctx.run_query(counters.get, {"name": name})
    await ctx.run_mutation(api.counters.increment, {"name": name, "by": 2.0})
    by_api = await ctx.run_query(api.counters.get, {"name": name})
    await ctx.run_mutation(internal.counters.reset, {"name": name})
    after_internal = await ctx.run_query("counters.js:get", {"name": name})
    return [by_string, by_object, by_api, after_internal]
