"""Old commit-log rows and request keys are pruned; subscriptions keep working."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from syncline import Client
from syncline.server import EmbeddedConfig, EmbeddedServer
from tests.engine.conftest import write_app

COUNTER = """
from syncline import mutation, query

@mutation
async def bump(ctx):
    doc = await ctx.db.query("counters").first()
    if doc is None:
        await ctx.db.insert("counters", {"value": 1.0})
    else:
        await ctx.db.patch(doc["_id"], {"value": doc["value"] + 1.0})

@query
async def value(ctx):
    doc = await ctx.db.query("counters").first()
    return doc["value"] if doc else 0.0
"""


def _count(db: Path, table: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


async def test_prune_keeps_the_newest_commit_and_subscriptions_live(tmp_path: Path) -> None:
    app = write_app(tmp_path / "app", {"counter.py": COUNTER})
    config = EmbeddedConfig(
        app,
        tmp_path / "data",
        port=0,
        commit_log_retention_seconds=0.0,
        idempotency_retention_seconds=0.0,
    )
    async with EmbeddedServer(config) as server, Client(server.url) as client:
        for _ in range(5):
            await client.mutation("counter:bump")
        db = tmp_path / "data" / "syncline.sqlite3"
        assert _count(db, "commit_log") >= 5 and _count(db, "idempotency") == 5
        assert await server.prune() >= 8
        assert (_count(db, "commit_log"), _count(db, "idempotency")) == (1, 0)
        async with client.subscribe("counter:value") as values:
            assert await anext(values) == 5.0
            await client.mutation("counter:bump")
            assert await anext(values) == 6.0
