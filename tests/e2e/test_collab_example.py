"""The bundled example app, served by `syncline dev`, through the official PyPI client."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from convex import ConvexClient, ConvexError

from tests.fixtures.dev_server import DevServer

pytestmark = pytest.mark.e2e

COLLAB = Path(__file__).resolve().parents[2] / "examples" / "collab"


@pytest.fixture
async def collab(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DevServer]:
    server = DevServer(COLLAB, tmp_path / "data", tmp_path / "server.log")
    await server.start()
    try:
        yield server
    finally:
        server.stop()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(f"--- syncline dev log ---\n{server.log()}")


async def _call(fn: object, *args: object) -> object:
    return await asyncio.to_thread(fn, *args)  # type: ignore[arg-type]


async def test_rooms_messages_and_activity(collab: DevServer) -> None:
    client = ConvexClient(collab.url)
    ada = await _call(client.mutation, "users:join", {"name": "ada"})
    room = await _call(client.mutation, "rooms:create", {"name": "general", "createdBy": ada})
    with pytest.raises(ConvexError) as duplicate:
        await _call(client.mutation, "rooms:create", {"name": "general"})
    assert duplicate.value.data["code"] == "ROOM_EXISTS"
    for body in ("one", "two", "three"):
        await _call(
            client.mutation, "messages:send", {"roomId": room, "body": body, "authorId": ada}
        )
    messages = await _call(client.query, "messages:list", {"roomId": room})
    assert [m["body"] for m in messages] == ["one", "two", "three"]
    activity = await _call(client.query, "rooms:activity", {"roomId": room})
    assert activity["messageCount"] == 3
    online = await _call(client.query, "users:list_online", {})
    assert [u["name"] for u in online] == ["ada"]


async def test_concurrent_document_edits_converge(collab: DevServer) -> None:
    alice, bob = ConvexClient(collab.url), ConvexClient(collab.url)
    room = await _call(alice.mutation, "rooms:create", {"name": "docs"})
    doc = await _call(
        alice.mutation, "documents:create", {"roomId": room, "title": "t", "text": "hello world"}
    )
    # Both edit version 0 concurrently; the server transforms the later one.
    results = await asyncio.gather(
        _call(
            alice.mutation,
            "documents:apply_edit",
            {
                "documentId": doc,
                "baseVersion": 0.0,
                "op": {"type": "insert", "pos": 5.0, "text": ","},
            },
        ),
        _call(
            bob.mutation,
            "documents:apply_edit",
            {
                "documentId": doc,
                "baseVersion": 0.0,
                "op": {"type": "delete", "pos": 6.0, "length": 5.0},
            },
        ),
    )
    final = await _call(alice.query, "documents:get", {"documentId": doc})
    assert final["text"] == "hello, "
    assert final["version"] == 2.0
    assert sorted(r["version"] for r in results) == [1.0, 2.0]
    with pytest.raises(ConvexError) as conflict:
        await _call(
            bob.mutation,
            "documents:replace_text",
            {"documentId": doc, "expectedVersion": 0.0, "text": "x"},
        )
    assert conflict.value.data["code"] == "VERSION_CONFLICT"


def test_cli_version_and_admin_key(tmp_path: Path) -> None:
    version = subprocess.run(
        [sys.executable, "-m", "syncline.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert version.stdout.strip() == "syncline 0.1.0"
    key = subprocess.run(
        [sys.executable, "-m", "syncline.cli", "admin-key", "--data", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert key.stdout.startswith("syncline-admin|default|")


async def test_cli_run(collab: DevServer) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "syncline.cli", "run", "--url", collab.url, *args],
            capture_output=True,
            text=True,
        )

    created = await asyncio.to_thread(run, "rooms:create", '{"name": "cli"}')
    assert created.returncode == 0, created.stderr
    listed = await asyncio.to_thread(run, "rooms:list")
    assert '"name": "cli"' in listed.stdout
    missing = await asyncio.to_thread(run, "rooms:nope")
    assert (
        missing.returncode == 1
        and "Could not find public function for 'rooms:nope'" in missing.stderr
    )
    bad_json = await asyncio.to_thread(run, "rooms:list", "{oops")
    assert bad_json.returncode == 2 and "ARGS must be a JSON object" in bad_json.stderr


async def test_cursors_and_typing_are_presence_not_documents(collab: DevServer) -> None:
    ada, bob = ConvexClient(collab.url), ConvexClient(collab.url)
    room = await _call(ada.mutation, "rooms:create", {"name": "design"})
    me = await _call(
        ada.mutation,
        "presence:update",
        {"roomId": room, "name": "ada", "cursor": {"x": 1.0, "y": 2.0}},
    )
    await _call(bob.mutation, "presence:update", {"roomId": room, "name": "bob", "typing": True})
    for x in range(5):
        await _call(
            ada.mutation,
            "presence:update",
            {"roomId": room, "name": "ada", "cursor": {"x": float(x), "y": 0.0}},
        )
    here = await _call(bob.query, "presence:list", {"roomId": room})
    assert {m["name"]: (m["cursor"], m["typing"]) for m in here} == {
        "ada": ({"x": 4.0, "y": 0.0}, False),
        "bob": (None, True),
    }
    assert me in {m["member"] for m in here}
    assert await _call(ada.query, "presence:typing", {"roomId": room}) == ["bob"]
    await _call(bob.mutation, "presence:leave", {"roomId": room})
    assert [m["name"] for m in await _call(ada.query, "presence:list", {"roomId": room})] == ["ada"]
    with pytest.raises(Exception, match=r"ValidationFailed: args\.roomId"):
        await _call(ada.mutation, "presence:update", {"roomId": "k" * 32, "name": "ada"})
