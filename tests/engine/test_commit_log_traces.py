"""A commit's trace context travels in its commit-log row, so every node that
re-runs subscriptions for it can link to its trace; rows without one (untraced
commits, rows written by earlier versions) read as before."""

from __future__ import annotations

from pathlib import Path

from opentelemetry import context as otel_context

from syncline.storage._codec import TRACE_PAIR_INDEX_ID, decode_commit_keys, encode_commit_keys
from syncline.telemetry import context_from
from tests.engine.conftest import EngineFactory, write_app

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
APP = """
from syncline import mutation

@mutation
async def add(ctx):
    return await ctx.db.insert("things", {"n": 1.0})
"""


def test_rows_without_a_trace_decode_as_before() -> None:
    keys = ((3, b"\x01key"), (4, b""))
    old_row = encode_commit_keys(keys)
    assert decode_commit_keys(old_row) == (keys, "")
    traced = encode_commit_keys(keys, TRACEPARENT)
    assert traced.startswith(old_row)
    assert decode_commit_keys(traced) == (keys, TRACEPARENT)


async def test_a_traced_commit_keeps_its_traceparent_in_the_log(
    make_engine: EngineFactory, tmp_path: Path
) -> None:
    engine = await make_engine()
    await engine.deploy(write_app(tmp_path / "app", {"things.py": APP}))
    await engine.mutation("things:add")  # untraced
    token = otel_context.attach(context_from(TRACEPARENT) or otel_context.get_current())
    try:
        await engine.mutation("things:add")
    finally:
        otel_context.detach(token)
    async with engine.storage.snapshot() as snapshot:
        *_, untraced, traced = await snapshot.commits_after(0, limit=100)
    assert untraced.traceparent == "" and traced.traceparent == TRACEPARENT
    assert traced.keys and all(index_id != TRACE_PAIR_INDEX_ID for index_id, _ in traced.keys)
    assert {index_id for index_id, _ in untraced.keys} == {i for i, _ in traced.keys}
