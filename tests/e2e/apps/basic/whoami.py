from syncline import query


@query
async def me(ctx):
    identity = await ctx.auth.get_user_identity()
    if identity is None:
        return None
    return {"tokenIdentifier": identity["tokenIdentifier"], "name": identity.get("name")}
