"""Execution limits of queries and mutations: reads, writes and time, each named
when it fails, and nothing written by a mutation that went past one."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from syncline._errors import LimitExceededError
from syncline.database import TransactionLimits
from syncline.runtime import RunnerConfig
from syncline.storage import DeferredSnapshot
from tests.engine.conftest import Engine, EngineFactory, write_app

APP = """
import asyncio
import time
from syncline import mutation, query, v


@mutation(args={"count": v.float64(), "size": v.optional(v.float64())})
async def insert(ctx, count, size=0.0):
    return [await ctx.db.insert("items", {"blob": "x" * int(size)}) for _ in range(int(count))]


@query
async def all_items(ctx):
    return len(await ctx.db.query("items").collect())


@query(args={"ids": v.array(v.string())})
async def get_each(ctx, ids):
    return [(await ctx.db.get(i)) is not None for i in ids]


@query(args={"seconds": v.float64()})
async def sleepy(ctx, seconds):
    await asyncio.sleep(seconds)
    return "woke"


@mutation(args={"seconds": v.float64()})
async def busy(ctx, seconds):
    await ctx.db.insert("items", {"blob": "busy"})
    time.sleep(seconds)  # never awaits: cannot be interrupted, still fails after


@mutation(args={"ids": v.array(v.string())})
async def touch_each(ctx, ids):
    for i in ids:
        await ctx.db.get(i)
    await ctx.db.insert("items", {"blob": "touched"})
"""

LIMITS = TransactionLimits(
    max_read_documents=5, max_read_intervals=3, max_write_documents=3, max_write_bytes=1000
)


async def engine_with(make_engine: EngineFactory, tmp_path: Path, **config: Any) -> Engine:
    engine = await make_engine(runner_config=RunnerConfig(**config))
    await engine.deploy(write_app(tmp_path / "app", {"items.py": APP}))
    return engine


async def test_reads_and_writes_past_a_limit_fail_naming_it_and_write_nothing(
    make_engine: EngineFactory, tmp_path: Path
) -> None:
    engine = await engine_with(make_engine, tmp_path, transaction_limits=LIMITS)
    ids = (await engine.mutation("items:insert", {"count": 3.0})).value
    assert await engine.query("items:get_each", {"ids": ids}) == [True] * 3
    with pytest.raises(LimitExceededError, match="at most 3 index ranges"):
        await engine.query("items:get_each", {"ids": [*ids, ids[0]]})
    await engine.mutation("items:insert", {"count": 3.0})
    with pytest.raises(LimitExceededError, match="at most 5 documents; use an index range"):
        await engine.query("items:all_items")
    with pytest.raises(LimitExceededError, match="write at most 3 documents"):
        await engine.mutation("items:insert", {"count": 4.0})
    with pytest.raises(LimitExceededError, match="at most 1000 bytes"):
        await engine.mutation("items:insert", {"count": 1.0, "size": 2000.0})
    # Nothing of the refused mutations was written.
    relaxed = await engine_with(make_engine, tmp_path / "relaxed")
    assert await relaxed.query("items:all_items") == 6


async def test_code_running_past_the_time_limit_fails_and_writes_nothing(
    make_engine: EngineFactory, tmp_path: Path
) -> None:
    engine = await engine_with(make_engine, tmp_path, max_execution_seconds=0.2)
    assert await engine.query("items:sleepy", {"seconds": 0.0}) == "woke"
    with pytest.raises(LimitExceededError, match=r"ran longer than 0\.2 s, the limit for a query"):
        await engine.query("items:sleepy", {"seconds": 5.0})
    with pytest.raises(LimitExceededError, match="the limit for a mutation"):
        await engine.mutation("items:busy", {"seconds": 0.3})
    assert await engine.query("items:all_items") == 0


async def test_waiting_for_storage_does_not_count_against_the_time_limit(
    make_engine: EngineFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = await engine_with(make_engine, tmp_path, max_execution_seconds=0.2)
    ids = (await engine.mutation("items:insert", {"count": 3.0})).value
    slow_get = DeferredSnapshot.get

    async def slow(self: DeferredSnapshot, doc_id: str) -> Any:
        await asyncio.sleep(0.1)  # a slow database, not slow code
        return await slow_get(self, doc_id)

    monkeypatch.setattr(DeferredSnapshot, "get", slow)
    await engine.mutation("items:touch_each", {"ids": ids * 1})  # 0.3 s of storage waits
    assert await engine.query("items:all_items") == 4


async def test_one_storage_wait_longer_than_the_time_limit_does_not_count(
    make_engine: EngineFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = await engine_with(make_engine, tmp_path, max_execution_seconds=0.2)
    ids = (await engine.mutation("items:insert", {"count": 1.0})).value
    slow_get = DeferredSnapshot.get

    async def restarting(self: DeferredSnapshot, doc_id: str) -> Any:
        await asyncio.sleep(0.5)  # the database restarting under one read
        return await slow_get(self, doc_id)

    monkeypatch.setattr(DeferredSnapshot, "get", restarting)
    await engine.mutation("items:touch_each", {"ids": ids})
    assert await engine.query("items:all_items") == 2
