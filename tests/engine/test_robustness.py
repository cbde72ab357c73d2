"""Hostile input and unusual code paths: scans that write, cursors, escaping exceptions."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from syncline import FunctionNotFoundError, ValidationError
from syncline.auth import UserIdentity
from syncline.runtime import Identity, UncaughtFunctionError
from syncline.sync import SubscriptionManager
from syncline.values import encode_index_key
from tests.engine.conftest import EngineFactory, eventually, write_app

APP = {
    "schema.py": """
        from syncline import define_schema, define_table, v
        schema = define_schema({
            "items": define_table({"n": v.float64(), "touched": v.boolean()}).index("by_n", ["n"]),
        })
    """,
    "items.py": """
        import asyncio
        from syncline import mutation, query, v

        @mutation(args={"count": v.float64()})
        async def seed(ctx, count):
            for n in range(int(count)):
                await ctx.db.insert("items", {"n": float(n), "touched": False})

        @mutation
        async def walk_and_touch_next(ctx):
            seen = []
            async for doc in ctx.db.query("items").with_index("by_n"):
                seen.append([doc["n"], doc["touched"]])
                following = await ctx.db.query("items").with_index(
                    "by_n", lambda q: q.eq("n", doc["n"] + 1.0)).first()
                if following is not None:
                    await ctx.db.patch(following["_id"], {"touched": True})
                if doc["n"] == 10.0:
                    gone = await ctx.db.query("items").with_index(
                        "by_n", lambda q: q.eq("n", 50.0)).first()
                    await ctx.db.delete(gone["_id"])
            return seen

        @query(args={"cursor": v.string()})
        async def page(ctx, cursor):
            return await ctx.db.query("items").with_index("by_n").paginate(
                {"numItems": 5, "cursor": cursor})

        @query(args={"cursor": v.string()})
        async def page_of_one(ctx, cursor):
            return await ctx.db.query("items").with_index(
                "by_n", lambda q: q.eq("n", 1.0)).paginate({"numItems": 5, "cursor": cursor})

        @query
        async def cancels(ctx):
            raise asyncio.CancelledError()

        @query
        async def count(ctx):
            return float(len(await ctx.db.query("items").collect()))
    """,
}


async def test_a_scan_sees_writes_made_while_it_runs(
    make_engine: EngineFactory, tmp_path: Path
) -> None:
    engine = await make_engine()
    await engine.deploy(write_app(tmp_path / "app", APP))
    await engine.mutation("items:seed", {"count": 100.0})
    seen = (await engine.mutation("items:walk_and_touch_next")).value
    # Every document once (n=50 deleted on the way), each after its predecessor touched it.
    assert [n for n, _ in seen] == [float(n) for n in range(100) if n != 50]
    assert all(touched for n, touched in seen if n not in (0.0, 51.0))


async def test_foreign_or_hostile_cursors_are_refused(
    make_engine: EngineFactory, tmp_path: Path
) -> None:
    engine = await make_engine()
    await engine.deploy(write_app(tmp_path / "app", APP))
    await engine.mutation("items:seed", {"count": 3.0})
    other_range = base64.urlsafe_b64encode(encode_index_key([2.0])).decode()
    with pytest.raises(ValidationError, match="cursor does not belong to this query"):
        await engine.query("items:page_of_one", {"cursor": other_range})
    with pytest.raises(ValidationError, match="invalid cursor"):
        await engine.query("items:page", {"cursor": "%%%"})
    # A deeply nested key is a harmless position in an unbounded range.
    deep = base64.urlsafe_b64encode(encode_index_key(["x"]) + b"\x08" * 5000).decode()
    page = await engine.query("items:page", {"cursor": deep})
    assert page["page"] == [] and page["isDone"] is True


async def test_a_query_raising_cancelled_error_fails_alone(
    make_engine: EngineFactory, tmp_path: Path
) -> None:
    engine = await make_engine()
    await engine.deploy(write_app(tmp_path / "app", APP))
    with pytest.raises(UncaughtFunctionError, match="Server Error"):
        await engine.query("items:cancels")

    class Recorder:
        def __init__(self) -> None:
            self.dirty = 0

        def mark_dirty(self) -> None:
            self.dirty += 1

    manager = SubscriptionManager(engine.storage, engine.runner)
    await manager.start()
    engine.commit_listeners.append(manager.notify_commit)
    try:
        session = Recorder()
        failing = manager.subscribe(session, "items:cancels", {}, Identity(), None)  # type: ignore[arg-type]
        counting = manager.subscribe(session, "items:count", {}, Identity(), None)  # type: ignore[arg-type]
        await eventually(lambda: counting.outcome is not None and failing.outcome is not None)
        await engine.mutation("items:seed", {"count": 1.0})
        await eventually(
            lambda: counting.outcome is not None and '"value":1.0' in counting.outcome.body
        )
    finally:
        await manager.close()


def test_identities_with_different_claims_do_not_share_results() -> None:
    def user(role: str) -> Identity:
        return Identity(
            UserIdentity("iss|u1", "u1", "iss", {"sub": "u1", "iss": "iss", "role": role})
        )

    assert user("admin").cache_key != user("viewer").cache_key
    assert user("admin").cache_key == user("admin").cache_key
    assert Identity().cache_key != Identity(admin=True).cache_key


async def test_admin_key_scopes_decide_which_internal_functions_an_admin_may_call(
    make_engine: EngineFactory, tmp_path: Path
) -> None:
    engine = await make_engine()
    await engine.deploy(
        write_app(
            tmp_path / "scoped",
            {
                "secret.py": """
                from syncline import internal_mutation, internal_query

                @internal_query
                async def peek(ctx):
                    return "peeked"

                @internal_mutation
                async def poke(ctx):
                    return "poked"
                """
            },
        )
    )
    reader = Identity(admin=True, admin_scopes=frozenset({"read"}))
    runner = Identity(admin=True, admin_scopes=frozenset({"run"}))
    deployer = Identity(admin=True, admin_scopes=frozenset({"deploy"}))
    assert (await engine.runner.run_query("secret:peek", {}, reader)).value == "peeked"
    assert (await engine.runner.run_mutation("secret:poke", {}, runner)).value == "poked"
    # Without the scope it looks exactly like a missing function, and nothing runs.
    with pytest.raises(FunctionNotFoundError, match="Could not find public function"):
        await engine.runner.run_mutation("secret:poke", {}, reader)
    with pytest.raises(FunctionNotFoundError, match="Could not find public function"):
        await engine.runner.run_query("secret:peek", {}, deployer)
