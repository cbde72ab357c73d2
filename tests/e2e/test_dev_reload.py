"""`syncline dev` reloads changed code and re-runs subscriptions; bad changes keep the old code."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fixtures.dev_server import DevServer
from tests.fixtures.node_driver import NodeDriver

pytestmark = pytest.mark.e2e


@pytest.fixture
async def watched_server(
    request: pytest.FixtureRequest, basic_app: Path, tmp_path: Path
) -> AsyncIterator[DevServer]:
    server = DevServer(basic_app, tmp_path / "data", tmp_path / "server.log", watch=True)
    await server.start()
    try:
        yield server
    finally:
        server.stop()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(f"--- syncline dev log ---\n{server.log()}")


async def _wait_for_log(
    server: DevServer, fragment: str, count: int, timeout: float = 15.0
) -> None:
    deadline = time.monotonic() + timeout
    while server.log().count(fragment) < count:
        assert time.monotonic() < deadline, f"{fragment!r} not logged:\n{server.log()}"
        await asyncio.sleep(0.05)


async def test_code_change_reruns_subscriptions(
    node: NodeDriver, watched_server: DevServer, basic_app: Path
) -> None:
    await node.call("client", name="c", url=watched_server.url)
    sub = await node.call("subscribe", client="c", path="whoami:me", args={})
    assert await node.wait_for_update(sub, lambda v: v is None) is None
    (basic_app / "whoami.py").write_text(
        "from syncline import query\n\n@query\nasync def me(ctx):\n    return 'changed'\n"
    )
    assert await node.wait_for_update(sub, lambda v: v == "changed", timeout=20) == "changed"


async def test_broken_change_keeps_serving_the_previous_version(
    node: NodeDriver, watched_server: DevServer, basic_app: Path
) -> None:
    await node.call("client", name="c", url=watched_server.url)
    await node.call("mutation", client="c", path="notes:add", args={"author": "a", "body": "kept"})
    notes_source = (basic_app / "notes.py").read_text()
    (basic_app / "notes.py").write_text(notes_source + "\ndef broken(:\n")
    await _wait_for_log(watched_server, "Reload failed", 1)
    assert "SyntaxError" in watched_server.log()
    notes = await node.call("query", client="c", path="notes:by_author", args={"author": "a"})
    assert [n["body"] for n in notes] == ["kept"]

    (basic_app / "notes.py").write_text(notes_source)
    await _wait_for_log(watched_server, "Reloaded", 1)

    # A schema that existing documents violate is refused, naming them.
    schema = (basic_app / "schema.py").read_text()
    (basic_app / "schema.py").write_text(
        schema.replace('"body": v.string()', '"body": v.float64()')
    )
    await _wait_for_log(watched_server, "Reload refused", 1)
    assert notes[0]["_id"] in watched_server.log()
    assert (
        await node.call("query", client="c", path="notes:by_author", args={"author": "a"}) == notes
    )
