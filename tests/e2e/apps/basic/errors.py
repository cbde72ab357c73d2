"""Functions that fail in every way a client must see clearly."""

from syncline import AppError, internal_query, mutation, query


@query
async def app_error(ctx):
    raise AppError({"code": "NOPE", "detail": 1.0})


@mutation
async def crash(ctx):
    await ctx.db.insert("notes", {"author": "crash", "body": "must not persist"})
    raise RuntimeError("secret internal detail /etc/passwd")


@query
async def write_in_query(ctx):
    await ctx.db.insert("notes", {"author": "x", "body": "y"})


@internal_query
async def secret(ctx):
    return "internal only"
