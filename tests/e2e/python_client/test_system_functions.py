"""The admin dashboard's system functions (``_system/...``) over the sync protocol,
against an embedded server: who may call them, what they return, and that their
results follow commits, the log tail and the server's health live."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from syncline.app import load_app
from syncline.client import Client, FunctionError
from syncline.server import EmbeddedConfig, EmbeddedServer
from tests.e2e.python_client.support import ClientFactory, until

pytestmark = pytest.mark.e2e


@pytest.fixture
async def admin(server: EmbeddedServer, connect: ClientFactory) -> Client:
    return await connect(server.url, admin_key=server.admin_key)


@pytest.fixture
async def user(server: EmbeddedServer, connect: ClientFactory) -> AsyncIterator[Client]:
    yield await connect(server.url)


async def test_only_an_admin_key_reaches_system_functions(
    server: EmbeddedServer, user: Client, connect: ClientFactory
) -> None:
    for call in (
        user.query("_system/deployment:describe"),
        user.mutation("_system/data:insert", {"table": "blobs", "document": {"value": 1}}),
    ):
        with pytest.raises(FunctionError, match="Could not find public function"):
            await call
    reader = await connect(server.url, admin_key=server.admin_keys.issue("r", {"read"}))  # type: ignore[union-attr]
    assert (await reader.query("_system/deployment:describe"))["mode"] == "embedded"
    # Reading is not writing: a read-only key cannot edit documents.
    with pytest.raises(FunctionError, match="Could not find public function"):
        await reader.mutation("_system/data:insert", {"table": "blobs", "document": {"value": 1}})
    assert await user.query("counter:get", {"name": "untouched"}) == 0


async def test_describe_lists_tables_indexes_and_functions(admin: Client) -> None:
    described = await admin.query("_system/deployment:describe")
    tables = {t["name"]: t for t in described["tables"]}
    assert {"counters", "blobs", "_scheduled_functions", "_cron_jobs"} <= set(tables)
    counters = tables["counters"]
    assert not counters["system"] and tables["_cron_jobs"]["system"]
    assert {"name": "by_name", "fields": ["name"]} in counters["indexes"]
    assert "name" in counters["validator"] and "int64" in counters["validator"]
    functions = {f["path"]: f for f in described["functions"]}
    assert functions["counter:get"]["kind"] == "query"
    assert functions["counter:get"]["visibility"] == "public"
    assert "string" in functions["counter:get"]["args"]
    # The system functions themselves are not the app's.
    assert not any(path.startswith("_system/") for path in functions)


async def test_data_pages_follow_commits_and_edits_are_validated(
    admin: Client, user: Client
) -> None:
    sub = admin.subscribe("_system/data:page", {"table": "counters"})
    assert (await until(sub, lambda p: True))["page"] == []
    await user.mutation("counter:increment", {"name": "live"})
    page = await until(sub, lambda p: len(p["page"]) == 1)
    doc = page["page"][0]
    assert doc["name"] == "live" and doc["value"] == 1

    # A document that breaks the schema is refused, and nothing changes.
    with pytest.raises(FunctionError, match=r"value.*int64"):
        await admin.mutation(
            "_system/data:replace", {"id": doc["_id"], "document": {"name": "live", "value": "x"}}
        )
    assert await user.query("counter:get", {"name": "live"}) == 1

    await admin.mutation(
        "_system/data:replace", {"id": doc["_id"], "document": {**doc, "value": 41}}
    )
    page = await until(sub, lambda p: p["page"] and p["page"][0]["value"] == 41)
    assert page["page"][0]["_id"] == doc["_id"]

    # Filter by an index's leading field; page through with the cursor.
    for name in ("a", "b", "c"):
        await admin.mutation(
            "_system/data:insert", {"table": "counters", "document": {"name": name, "value": 0}}
        )
    only_b = await admin.query(
        "_system/data:page", {"table": "counters", "index": "by_name", "eq": ["b"]}
    )
    assert [d["name"] for d in only_b["page"]] == ["b"]
    first = await admin.query(
        "_system/data:page",
        {"table": "counters", "index": "by_name", "order": "asc", "numItems": 2},
    )
    assert [d["name"] for d in first["page"]] == ["a", "b"] and not first["isDone"]
    rest = await admin.query(
        "_system/data:page",
        {
            "table": "counters",
            "index": "by_name",
            "order": "asc",
            "numItems": 2,
            "cursor": first["continueCursor"],
        },
    )
    assert [d["name"] for d in rest["page"]] == ["c", "live"]

    await admin.mutation("_system/data:delete", {"id": doc["_id"]})
    assert await user.query("counter:get", {"name": "live"}) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"table": "nope"}, "table 'nope' does not exist"),
        ({"table": "counters", "index": "by_nothing"}, "has no index 'by_nothing'"),
        (
            {"table": "counters", "index": "by_name", "eq": ["a", "b"]},
            "index 'by_name' covers name: at most 1 values to match, got 2",
        ),
        ({"table": "counters", "numItems": 0}, "numItems must be 1 to 200"),
        ({"table": 5}, "table"),
    ],
)
async def test_bad_page_requests_name_what_is_wrong(
    admin: Client, args: dict[str, Any], message: str
) -> None:
    with pytest.raises(FunctionError, match=message):
        await admin.query("_system/data:page", args)


async def test_system_tables_are_readable_but_not_writable(admin: Client) -> None:
    jobs = await admin.query("_system/data:page", {"table": "_scheduled_functions"})
    assert jobs["page"] == []
    with pytest.raises(FunctionError, match="Syncline's own tables: read-only"):
        await admin.mutation(
            "_system/data:insert", {"table": "_scheduled_functions", "document": {"name": "x"}}
        )
    job_id = await admin.mutation("ops:later", {"name": "x", "seconds": 60.0})
    with pytest.raises(FunctionError, match="system documents cannot be written"):
        await admin.mutation("_system/data:delete", {"id": job_id})


async def test_log_tail_shows_lines_and_failures_live(admin: Client, user: Client) -> None:
    tail = admin.subscribe("_system/logs:tail", {"path": "ops"})
    await until(tail, lambda entries: True)
    await user.mutation("ops:noisy", {"text": "hello from noisy"})
    entries = await until(tail, lambda e: any("hello from noisy" in x["message"] for x in e))
    printed = next(x for x in entries if "hello from noisy" in x["message"])
    assert printed["path"] == "ops:noisy" and printed["kind"] == "mutation"
    assert printed["level"] == "LOG"
    # logging from the app's module arrives with its level.
    assert any(x["level"] == "WARN" and "careful" in x["message"] for x in entries)

    # So do scheduled functions', run by the scheduler.
    await user.mutation("ops:noisy_later", {"text": "hello from a job"})
    await until(tail, lambda e: any(x["message"] == "hello from a job" for x in e))

    with pytest.raises(FunctionError):
        await user.mutation("ops:explode", {})
    errors = admin.subscribe("_system/logs:tail", {"level": "ERROR"})
    entries = await until(errors, lambda e: any(x["path"] == "ops:explode" for x in e))
    failure = next(x for x in entries if x["path"] == "ops:explode")
    # The admin sees the exception; the client saw only "Server Error".
    assert "ZeroDivisionError" in failure["message"]
    assert all(x["level"] == "ERROR" for x in entries)


async def test_apps_cannot_read_the_reserved_log_room(user: Client) -> None:
    with pytest.raises(FunctionError, match="reserved"):
        await user.query("ops:peek_room", {"room": "_system/logs"})


async def test_health_reports_the_embedded_node_and_commit_rate(
    admin: Client, user: Client
) -> None:
    health = admin.subscribe("_system/health:cluster")
    first = await until(health, lambda h: h is not None)
    assert first["mode"] == "embedded"
    [region] = first["regions"]
    assert region["primary"] and region["nodes"][0]["role"] == "embedded"
    for _ in range(20):
        await user.mutation("counter:increment", {"name": "rate"})
    busy = await until(health, lambda h: h["commitsPerSecond"] > 0)
    assert busy["lastCommitTime"] is not None


async def test_scheduled_jobs_are_listed_and_cancelled(admin: Client, user: Client) -> None:
    job_id = await user.mutation("ops:later", {"name": "scheduled", "seconds": 3600.0})
    jobs = admin.subscribe("_system/jobs:list", {"state": "pending"})
    pending = await until(jobs, lambda js: any(j["_id"] == job_id for j in js))
    assert next(j for j in pending if j["_id"] == job_id)["name"] == "counter:increment"
    await admin.mutation("_system/jobs:cancel", {"id": job_id})
    await until(jobs, lambda js: all(j["_id"] != job_id for j in js))
    [canceled] = await admin.query("_system/jobs:list", {"state": "canceled"})
    assert canceled["_id"] == job_id and canceled["state"]["kind"] == "canceled"
    assert await admin.query("_system/jobs:crons") == []


async def test_deployed_versions_are_listed_newest_first_and_outlive_a_restart(
    server: EmbeddedServer, admin: Client, app_dir: Path, tmp_path: Path
) -> None:
    first = await admin.query("_system/deployment:describe")
    assert first["version"] == 1 and [v["version"] for v in first["versions"]] == [1]
    assert first["deployedAt"] == first["versions"][0]["deployedAt"]
    (app_dir / "extra.py").write_text(
        "from syncline import query\n\n@query\nasync def one(ctx):\n    return 1\n"
    )
    await server.deploy(load_app(app_dir))
    second = await admin.query("_system/deployment:describe")
    assert [v["version"] for v in second["versions"]] == [2, 1]
    newest, oldest = second["versions"]
    assert newest["functions"] == oldest["functions"] + 1 and newest["digest"] != oldest["digest"]
    await server.close()
    again = EmbeddedServer(EmbeddedConfig(app_dir=app_dir, data_dir=tmp_path / "data", port=0))
    await again.start()
    try:
        client = Client(again.url, admin_key=again.admin_key)
        await client.connect()
        try:
            third = await client.query("_system/deployment:describe")
        finally:
            await client.close()
    finally:
        await again.close()
    assert [v["version"] for v in third["versions"]] == [3, 2, 1]
    assert third["versions"][0]["digest"] == newest["digest"]


async def test_app_functions_cannot_reach_system_functions(admin: Client) -> None:
    # Not by scheduling them, nor by calling them from an action, even for an admin.
    with pytest.raises(FunctionError, match="no function '_system/verify:effect'"):
        await admin.mutation("ops:schedule_system")
    with pytest.raises(FunctionError, match="Could not find public function"):
        await admin.action("ops:call_system")
