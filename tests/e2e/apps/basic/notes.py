"""Notes by author: index ranges, pagination, ids and identity."""

from syncline import AppError, mutation, query, v


@mutation(args={"author": v.string(), "body": v.string()}, returns=v.id("notes"))
async def add(ctx, author, body):
    return await ctx.db.insert("notes", {"author": author, "body": body})


@query(args={"author": v.string()})
async def by_author(ctx, author):
    return (
        await ctx.db.query("notes")
        .with_index("by_author", lambda q: q.eq("author", author))
        .collect()
    )


@query(args={"author": v.string(), "paginationOpts": v.any()})
async def page(ctx, author, paginationOpts):
    return await (
        ctx.db.query("notes")
        .with_index("by_author", lambda q: q.eq("author", author))
        .paginate(paginationOpts)
    )


@query(args={"id": v.id("notes")})
async def get(ctx, id):
    return await ctx.db.get(id)


@mutation(args={"id": v.id("notes")})
async def remove(ctx, id):
    if await ctx.db.get(id) is None:
        raise AppError({"code": "NOT_FOUND", "id": id})
    await ctx.db.delete(id)


@query(args={"paginationOpts": v.any()})
async def page_by_author(ctx, paginationOpts):
    return await ctx.db.query("notes").with_index("by_author").paginate(paginationOpts)
