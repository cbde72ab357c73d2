"""SubscriptionManager over the runner: sharing, precise invalidation, one ts per step."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from syncline.auth import AdminKeys, TokenVerifier
from syncline.runtime import ANONYMOUS, Identity
from syncline.sync import Authenticator, SharedQuery, SubscriptionManager, SyncSession
from tests.engine.conftest import Engine, EngineFactory, eventually, module_globals, write_app

SCHEMA = """
from syncline import define_schema, define_table, v

schema = define_schema({
    "messages": define_table({"room": v.string(), "body": v.string()}).index("by_room", ["room"]),
    "users": define_table({"name": v.string()}),
    "logs": define_table({"line": v.string()}),
    "left": define_table({"n": v.float64()}),
    "right": define_table({"n": v.float64()}),
})
"""

CHAT = """
from syncline import AppError, mutation, query

CALLS = {}


def count(name):
    CALLS[name] = CALLS.get(name, 0) + 1


@query
async def messages(ctx, room):
    count("messages:" + room)
    docs = await ctx.db.query("messages").with_index(
        "by_room", lambda q: q.eq("room", room)
    ).collect()
    return [d["body"] for d in docs]


@query
async def users(ctx):
    count("users")
    return [d["name"] for d in await ctx.db.query("users").collect()]


@query
async def side(ctx, table):
    count("side:" + table)
    doc = await ctx.db.query(table).first()
    return doc["n"] if doc else None


@query
async def first_user(ctx):
    count("first_user")
    doc = await ctx.db.query("users").first()
    if doc is None:
        raise AppError("no users yet")
    return doc["name"]


@mutation
async def post(ctx, room, body):
    return await ctx.db.insert("messages", {"room": room, "body": body})


@mutation
async def join(ctx, name):
    return await ctx.db.insert("users", {"name": name})


@mutation
async def log(ctx, line):
    return await ctx.db.insert("logs", {"line": line})


@mutation
async def bump_both(ctx):
    # Writes two tables in one transaction: a subscriber must never see one without the other.
    values = []
    for table in ("left", "right"):
        doc = await ctx.db.query(table).first()
        if doc is None:
            await ctx.db.insert(table, {"n": 1.0})
            values.append(1.0)
        else:
            await ctx.db.patch(doc["_id"], {"n": doc["n"] + 1})
            values.append(doc["n"] + 1)
    return values
"""


class RecordingSession:
    """Stands in for a SyncSession: records what was published when it was marked dirty."""

    def __init__(self, manager: SubscriptionManager) -> None:
        self.manager = manager
        self.queries: list[SharedQuery] = []
        self.seen: list[tuple[int, list[Any]]] = []

    def mark_dirty(self) -> None:
        values = [value_of(q) for q in self.queries]
        self.seen.append((self.manager.ts, values))


def value_of(query: SharedQuery) -> Any:
    if query.outcome is None:
        return None
    body = json.loads("{" + query.outcome.body)
    assert body["type"] == "QueryUpdated", body
    return body["value"]


class Harness:
    def __init__(self, engine: Engine, manager: SubscriptionManager) -> None:
        self.engine = engine
        self.manager = manager
        self.calls: dict[str, int] = module_globals(
            engine.deployments.current.app, "chat:messages"
        )["CALLS"]

    def session(self) -> RecordingSession:
        return RecordingSession(self.manager)

    def subscribe(
        self,
        session: RecordingSession,
        path: str,
        args: dict[str, Any],
        identity: Identity = ANONYMOUS,
    ) -> SharedQuery:
        query = self.manager.subscribe(session, path, args, identity, None)  # type: ignore[arg-type]
        session.queries.append(query)
        return query

    async def settled(self, *queries: SharedQuery) -> None:
        await eventually(lambda: all(q.outcome is not None for q in queries), what="first results")

    async def mutate(self, path: str, args: dict[str, Any] | None = None) -> int:
        """Run a mutation and wait until the subscriptions are current with it."""
        result = await self.engine.mutation(path, args)
        assert await self.manager.wait_for_ts(result.ts, 2.0), "subscriptions fell behind"
        return result.ts


@pytest.fixture
async def harness(make_engine: EngineFactory, tmp_path: Path) -> AsyncIterator[Harness]:
    engine = await make_engine()
    await engine.deploy(write_app(tmp_path / "app", {"schema.py": SCHEMA, "chat.py": CHAT}))
    manager = SubscriptionManager(engine.storage, engine.runner)
    engine.commit_listeners.append(manager.notify_commit)
    await manager.start()
    try:
        yield Harness(engine, manager)
    finally:
        await manager.close()


async def test_identical_subscriptions_share_one_query(harness: Harness) -> None:
    one, two = harness.session(), harness.session()
    first = harness.subscribe(one, "chat:messages", {"room": "a"})
    second = harness.subscribe(two, "chat:messages", {"room": "a"})
    other = harness.subscribe(two, "chat:messages", {"room": "b"})
    assert first is second
    assert other is not first
    assert harness.manager.query_count == 2
    assert first.subscribers == {one, two}
    await harness.settled(first, other)
    assert harness.calls == {"messages:a": 1, "messages:b": 1}

    await harness.mutate("chat:post", {"room": "a", "body": "hi"})
    assert value_of(first) == ["hi"]
    # Two subscribers, one execution.
    assert harness.calls == {"messages:a": 2, "messages:b": 1}


async def test_args_are_compared_by_value(harness: Harness) -> None:
    session = harness.session()
    first = harness.manager.subscribe(
        session,  # type: ignore[arg-type]
        "chat:side",
        {"table": "left", "extra": {"x": 1.0, "y": 2.0}},
        ANONYMOUS,
        None,
    )
    second = harness.manager.subscribe(
        session,  # type: ignore[arg-type]
        "chat:side",
        {"extra": {"y": 2.0, "x": 1.0}, "table": "left"},
        ANONYMOUS,
        None,
    )
    assert first is second
    different_identity = harness.manager.subscribe(
        session,  # type: ignore[arg-type]
        "chat:side",
        {"table": "left", "extra": {"x": 1.0, "y": 2.0}},
        Identity(admin=True),
        None,
    )
    assert different_identity is not first
    assert harness.manager.query_count == 2


async def test_only_invalidated_queries_rerun(harness: Harness) -> None:
    session = harness.session()
    room_a = harness.subscribe(session, "chat:messages", {"room": "a"})
    room_b = harness.subscribe(session, "chat:messages", {"room": "b"})
    users = harness.subscribe(session, "chat:users", {})
    await harness.settled(room_a, room_b, users)
    assert harness.calls == {"messages:a": 1, "messages:b": 1, "users": 1}

    await harness.mutate("chat:join", {"name": "ann"})
    assert harness.calls == {"messages:a": 1, "messages:b": 1, "users": 2}
    assert value_of(users) == ["ann"]

    # Same table, another index range: room a's query did not read it.
    await harness.mutate("chat:post", {"room": "b", "body": "x"})
    assert harness.calls == {"messages:a": 1, "messages:b": 2, "users": 2}
    assert value_of(room_b) == ["x"]
    assert value_of(room_a) == []

    # A table nobody read: nothing re-runs, but the published ts moves on.
    steps = harness.manager.steps
    ts = await harness.mutate("chat:log", {"line": "hello"})
    assert harness.calls == {"messages:a": 1, "messages:b": 2, "users": 2}
    assert harness.manager.ts == ts
    assert harness.manager.steps > steps


async def test_unsubscribed_query_is_dropped(harness: Harness) -> None:
    one, two = harness.session(), harness.session()
    query = harness.subscribe(one, "chat:users", {})
    harness.subscribe(two, "chat:users", {})
    await harness.settled(query)
    harness.manager.unsubscribe(one, query)  # type: ignore[arg-type]
    assert harness.manager.query_count == 1
    harness.manager.unsubscribe(two, query)  # type: ignore[arg-type]
    assert harness.manager.query_count == 0
    await harness.mutate("chat:join", {"name": "bob"})
    assert harness.calls["users"] == 1


async def test_results_are_published_at_one_ts(harness: Harness) -> None:
    session = harness.session()
    left = harness.subscribe(session, "chat:side", {"table": "left"})
    right = harness.subscribe(session, "chat:side", {"table": "right"})
    await harness.settled(left, right)
    value_at: dict[int, float] = {}
    for _ in range(15):
        result = await harness.engine.mutation("chat:bump_both")
        left_value, right_value = result.value
        assert left_value == right_value
        value_at[result.ts] = left_value
    assert await harness.manager.wait_for_ts(max(value_at), 2.0)

    published = [(ts, values) for ts, values in session.seen if values[0] is not None]
    assert published, "the session was never marked dirty"
    for ts, (left_value, right_value) in published:
        # Both results, and the ts they are published at, come from one snapshot.
        assert left_value == right_value
        committed = [t for t in value_at if t <= ts]
        assert committed and value_at[max(committed)] == left_value
    assert published[-1][1] == [15.0, 15.0]
    assert harness.manager.ts == max(value_at)


async def test_failed_query_reruns_when_what_it_read_changes(harness: Harness) -> None:
    session = harness.session()
    failing = harness.subscribe(session, "chat:first_user", {})
    await harness.settled(failing)
    assert failing.outcome is not None
    assert '"type":"QueryFailed"' in failing.outcome.body
    assert "no users yet" in failing.outcome.body

    await harness.mutate("chat:log", {"line": "unrelated"})
    assert harness.calls["first_user"] == 1
    await harness.mutate("chat:join", {"name": "cy"})
    assert harness.calls["first_user"] == 2
    assert value_of(failing) == "cy"


async def test_a_query_failed_by_storage_trouble_is_retried_without_a_commit(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = harness.engine.runner
    real_run_query = runner.run_query
    failures = [RuntimeError("storage went away")]

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return await real_run_query(*args, **kwargs)

    class QuietSession:
        def mark_dirty(self) -> None:
            pass

    monkeypatch.setattr(runner, "run_query", flaky)
    query = harness.manager.subscribe(QuietSession(), "chat:users", {}, ANONYMOUS, None)  # type: ignore[arg-type]
    await harness.settled(query)
    steps = harness.manager.steps
    assert not failures
    # Nothing commits, yet the failed result is replaced once storage answers again.
    await eventually(
        lambda: query.outcome is not None and '"type":"QueryUpdated"' in query.outcome.body,
        timeout_seconds=5,
        what="the query to be retried",
    )
    assert value_of(query) == []
    assert harness.manager.steps > steps


async def run_session(harness: Harness, frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A SyncSession fed ``frames``; what it sent once every mutation was answered."""
    sent: list[dict[str, Any]] = []
    verifier = TokenVerifier([])
    session = SyncSession(
        manager=harness.manager,
        runner=harness.engine.runner,
        authenticator=Authenticator(verifier, AdminKeys(bytes(32))),
        send=lambda text: _record(sent, text),
        close=lambda reason: _record(sent, json.dumps({"type": "Closed", "reason": reason})),
    )
    done = asyncio.Event()

    async def source() -> AsyncIterator[str]:
        for frame in frames:
            yield json.dumps(frame)
        await done.wait()

    run = asyncio.create_task(session.run(source()))
    mutations = sum(1 for f in frames if f["type"] == "Mutation")
    await eventually(
        lambda: sum(1 for f in sent if f["type"] == "MutationResponse") == mutations,
        what="every MutationResponse",
    )
    done.set()
    await run
    await verifier.close()
    return sent


async def _record(sent: list[dict[str, Any]], text: str) -> None:
    sent.append(json.loads(text))


async def test_a_first_connection_skips_the_lookup_a_resend_gets_the_first_result(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups: list[str] = []
    find = harness.engine.committer.find_idempotent

    async def counting(key: str) -> Any:
        lookups.append(key)
        return await find(key)

    monkeypatch.setattr(harness.engine.committer, "find_idempotent", counting)
    post = {"type": "Mutation", "requestId": 0, "udfPath": "chat:post"}
    post["args"] = [{"room": "r", "body": "hi"}]
    connect = {"type": "Connect", "sessionId": "s1", "connectionCount": 0, "lastCloseReason": None}
    first = await run_session(harness, [connect, post])
    assert lookups == []  # request 0 of a first connection: never sent before
    # The client reconnects and resends it (its reply was lost): looked up, not re-applied.
    again = await run_session(harness, [{**connect, "connectionCount": 1}, post])
    assert lookups == ["s1|0"]
    response = next(f for f in again if f["type"] == "MutationResponse")
    assert response["result"] == next(f for f in first if f["type"] == "MutationResponse")["result"]
    assert len(await harness.engine.query("chat:messages", {"room": "r"})) == 1
