"""An app's own rate limit: two messages at once per user, then one a second."""

from syncline import action, mutation, v


@mutation(args={"user": v.string()})
async def send(ctx, user):
    await ctx.rate_limiter.limit("send", key=user, per_second=1, burst=2)
    return "sent"


@action(args={"user": v.string()})
async def send_from_action(ctx, user):
    await ctx.rate_limiter.limit("send", key=user, per_second=1, burst=2)
    return "sent"
