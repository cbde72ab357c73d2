"""Bad input over HTTP and the sync protocol: clear, typed errors; nothing changes."""

from __future__ import annotations

import asyncio
import io
import json
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from syncline.sync import decode_ts, encode_ts
from tests.fixtures.dev_server import DevServer

pytestmark = pytest.mark.e2e


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _post(
    http: aiohttp.ClientSession, server: DevServer, endpoint: str, body: Any, **headers: str
) -> tuple[int, dict[str, Any]]:
    text = body if isinstance(body, str | bytes) else json.dumps(body)
    data = io.BytesIO(text.encode() if isinstance(text, str) else text)
    async with http.post(f"{server.url}{endpoint}", data=data, headers=headers) as response:
        return response.status, await response.json()


async def _counter(http: aiohttp.ClientSession, server: DevServer) -> Any:
    status, body = await _post(
        http, server, "/api/query", {"path": "notes:by_author", "args": {"author": "bad"}}
    )
    assert status == 200
    return body["value"]


async def test_http_bad_requests(http: aiohttp.ClientSession, dev_server: DevServer) -> None:
    cases: list[tuple[str, Any, int, str]] = [
        ("/api/query", "{not json", 400, "not valid JSON"),
        ("/api/query", "[1, 2]", 400, "must be a JSON object"),
        ("/api/query", {"args": {}}, 400, "string 'path'"),
        ("/api/query", {"path": "notes:by_author", "args": [{}, {}]}, 400, "one-element array"),
        (
            "/api/query",
            {"path": "notes:by_author", "args": {}, "format": "xml"},
            400,
            "unsupported format",
        ),
        (
            "/api/query",
            {"path": "nope:nothing", "args": {}},
            560,
            "Could not find public function for 'nope:nothing'",
        ),
        (
            "/api/query",
            {"path": "errors:secret", "args": {}},
            560,
            "Could not find public function for 'errors:secret'",
        ),
        (
            "/api/mutation",
            {"path": "notes:by_author", "args": {"author": "x"}},
            560,
            "is a query, not a mutation",
        ),
        (
            "/api/mutation",
            {"path": "notes:add", "args": {"author": "bad", "body": {"$integer": "AQAAAAAAAAA="}}},
            560,
            "args.body: expected string, got int64",
        ),
        (
            "/api/mutation",
            {"path": "notes:add", "args": {"author": "bad"}},
            560,
            "args.body: missing required field",
        ),
        (
            "/api/mutation",
            {"path": "notes:add", "args": {"author": "bad", "body": "x", "extra": 1}},
            560,
            "unexpected field 'extra'",
        ),
        ("/api/query", {"path": "notes:get", "args": {"id": "abc"}}, 560, "args.id"),
        (
            "/api/query",
            {"path": "values:echo", "args": {"value": {"$integer": "AQ=="}}},
            560,
            "8 bytes",
        ),
        ("/api/query", {"path": "values:echo", "args": {"value": {"$weird": 1}}}, 560, "$weird"),
    ]
    for endpoint, body, status, fragment in cases:
        got_status, got = await _post(http, dev_server, endpoint, body)
        text = got.get("errorMessage") or got.get("message") or ""
        assert (got_status, fragment in text) == (status, True), (endpoint, body, got)
    assert await _counter(http, dev_server) == []


async def test_http_oversized_values_change_nothing(
    http: aiohttp.ClientSession, dev_server: DevServer
) -> None:
    big = "x" * (1024 * 1024 + 10)
    status, body = await _post(
        http,
        dev_server,
        "/api/mutation",
        {"path": "notes:add", "args": {"author": "bad", "body": big}},
    )
    assert status == 560 and "limit" in body["errorMessage"]
    deep: Any = "leaf"
    for _ in range(20):
        deep = [deep]
    status, body = await _post(
        http, dev_server, "/api/mutation", {"path": "values:store", "args": {"payload": deep}}
    )
    assert status == 560 and "nested more than the limit of 16" in body["errorMessage"]
    status, body = await _post(
        http,
        dev_server,
        "/api/mutation",
        {"path": "values:store", "args": {"payload": [0.0] * 9000}},
    )
    assert status == 560 and "8192" in body["errorMessage"]
    status, body = await _post(
        http, dev_server, "/api/query", b"{" + b" " * (9 * 1024 * 1024) + b"}"
    )
    assert status == 413 and "exceeds" in body["message"]
    assert await _counter(http, dev_server) == []
    status, body = await _post(
        http, dev_server, "/api/query", {"path": "values:echo", "args": {"value": 1.0}}
    )
    assert (status, body["value"]) == (200, 1.0)


async def test_http_bad_credentials(http: aiohttp.ClientSession, dev_server: DevServer) -> None:
    query = {"path": "whoami:me", "args": {}}
    status, body = await _post(
        http, dev_server, "/api/query", query, Authorization="Bearer not.a.jwt"
    )
    assert (
        status == 401 and body["code"] == "Unauthenticated" and "Malformed token" in body["message"]
    )
    status, body = await _post(http, dev_server, "/api/query", query, Authorization="Basic abc")
    assert status == 401 and "Bearer <token>" in body["message"]
    status, body = await _post(
        http, dev_server, "/api/query", query, Authorization="Convex syncline-admin|default|00"
    )
    assert status == 401 and "admin key" in body["message"]


class RawSession:
    """A hand-driven sync protocol session."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def send(self, message: Any) -> None:
        await self.ws.send_str(message if isinstance(message, str) else json.dumps(message))

    async def receive(self, timeout: float = 5.0) -> dict[str, Any]:
        while True:
            message = await self.ws.receive(timeout)
            if message.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.CLOSING,
            ):
                return {"type": "<closed>", "code": self.ws.close_code}
            frame = json.loads(message.data)
            if frame["type"] != "Ping":
                return frame

    async def receive_type(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        while (frame := await self.receive(timeout))["type"] != kind:
            assert frame["type"] == "Transition", frame
        return frame

    async def connect(self, session_id: str | None = None, **extra: Any) -> None:
        await self.send(
            {
                "type": "Connect",
                "sessionId": session_id or str(uuid.uuid4()),
                "connectionCount": 0,
                "lastCloseReason": None,
                "clientTs": 0,
                **extra,
            }
        )


@pytest.fixture
async def raw(http: aiohttp.ClientSession, dev_server: DevServer) -> AsyncIterator[Any]:
    opened: list[aiohttp.ClientWebSocketResponse] = []

    async def open_session() -> RawSession:
        ws = await http.ws_connect(f"{dev_server.url.replace('http', 'ws')}/api/1.48.0/sync")
        opened.append(ws)
        return RawSession(ws)

    yield open_session
    for ws in opened:
        await ws.close()


async def test_malformed_frames_end_the_session_with_a_fatal_error(raw: Any) -> None:
    for frame, fragment in [
        ("{not json", "not valid JSON"),
        (json.dumps({"type": "Nope"}), "unknown message type"),
        (
            json.dumps(
                {"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1, "modifications": []}
            ),
            "first message must be Connect",
        ),
    ]:
        session = await raw()
        await session.send(frame)
        fatal = await session.receive()
        assert fatal["type"] == "FatalError" and fragment in fatal["error"], fatal
        assert (await session.receive())["type"] == "<closed>"


async def test_out_of_order_query_set_version_is_fatal(raw: Any) -> None:
    session = await raw()
    await session.connect()
    await session.send(
        {"type": "ModifyQuerySet", "baseVersion": 3, "newVersion": 4, "modifications": []}
    )
    fatal = await session.receive()
    assert fatal["type"] == "FatalError"
    assert "baseVersion 3 does not match the session's query set version 0" in fatal["error"]


async def test_bad_queries_and_mutations_fail_alone(raw: Any) -> None:
    session = await raw()
    await session.connect()
    await session.send(
        {
            "type": "ModifyQuerySet",
            "baseVersion": 0,
            "newVersion": 1,
            "modifications": [
                {"type": "Add", "queryId": 0, "udfPath": "nope:x", "args": [{}]},
                {"type": "Add", "queryId": 1, "udfPath": "counters:get", "args": [{"name": 5.0}]},
                {
                    "type": "Add",
                    "queryId": 2,
                    "udfPath": "counters:get",
                    "args": [{"name": "fine"}],
                },
            ],
        }
    )
    transition = await session.receive()
    assert transition["type"] == "Transition"
    by_id = {m["queryId"]: m for m in transition["modifications"]}
    assert by_id[0]["type"] == "QueryFailed" and "nope:x" in by_id[0]["errorMessage"]
    assert "errorData" not in by_id[0]
    assert (
        by_id[1]["type"] == "QueryFailed"
        and "args.name: expected string" in by_id[1]["errorMessage"]
    )
    assert by_id[2] == {
        "queryId": 2,
        "type": "QueryUpdated",
        "value": 0.0,
        "logLines": [],
        "journal": None,
    }
    await session.send(
        {"type": "Mutation", "requestId": 0, "udfPath": "errors:secret", "args": [{}]}
    )
    response = await session.receive_type("MutationResponse")
    assert response["type"] == "MutationResponse" and response["success"] is False
    assert "Could not find public function" in response["result"]
    await session.send(
        {
            "type": "Mutation",
            "requestId": 1,
            "udfPath": "counters:increment",
            "args": [{"name": "fine"}],
        }
    )
    response = await session.receive_type("MutationResponse")
    assert response["success"] is True and response["result"] == 1.0


async def test_invalid_token_gets_auth_error(raw: Any) -> None:
    session = await raw()
    await session.connect()
    await session.send(
        {"type": "Authenticate", "baseVersion": 0, "tokenType": "User", "value": "garbage"}
    )
    error = await session.receive()
    assert (
        error["type"] == "AuthError"
        and error["baseVersion"] == 0
        and "Malformed token" in error["error"]
    )
    assert (await session.receive())["type"] == "<closed>"


async def test_oversized_frame_closes_the_connection(raw: Any) -> None:
    session = await raw()
    await session.connect()
    try:
        await session.send(
            json.dumps({"type": "Event", "eventType": "x", "event": "y" * (9 * 1024 * 1024)})
        )
    except ConnectionError:
        return  # the server closed the connection while the frame was still arriving
    closed = await session.receive(timeout=10)
    assert closed["type"] == "<closed>" and closed["code"] == 1009


async def test_retried_mutation_applies_once(raw: Any) -> None:
    session_id = str(uuid.uuid4())
    first = await raw()
    await first.connect(session_id)
    mutation = {
        "type": "Mutation",
        "requestId": 7,
        "udfPath": "counters:increment",
        "args": [{"name": "dedupe"}],
    }
    await first.send(mutation)
    response = await first.receive()
    assert response["result"] == 1.0
    await first.ws.close()
    # The client reconnects with the same session and resends the unconfirmed mutation.
    second = await raw()
    await second.connect(session_id, connectionCount=1)
    await second.send(mutation)
    again = await second.receive()
    assert again["success"] is True and again["result"] == 1.0 and again["ts"] == response["ts"]
    await second.send(
        {
            "type": "ModifyQuerySet",
            "baseVersion": 0,
            "newVersion": 1,
            "modifications": [
                {
                    "type": "Add",
                    "queryId": 0,
                    "udfPath": "counters:get",
                    "args": [{"name": "dedupe"}],
                }
            ],
        }
    )
    while (transition := await second.receive())["type"] != "Transition" or not transition[
        "modifications"
    ]:
        pass
    assert transition["modifications"][0]["value"] == 1.0


async def test_max_observed_timestamp_is_never_served_stale(
    raw: Any, http: aiohttp.ClientSession, dev_server: DevServer
) -> None:
    async with http.post(f"{dev_server.url}/api/query_ts") as response:
        now_ts = decode_ts((await response.json())["ts"], "ts")
    ahead = now_ts + 1
    session = await raw()
    await session.connect(maxObservedTimestamp=encode_ts(ahead))
    await session.send(
        {
            "type": "ModifyQuerySet",
            "baseVersion": 0,
            "newVersion": 1,
            "modifications": [
                {
                    "type": "Add",
                    "queryId": 0,
                    "udfPath": "counters:get",
                    "args": [{"name": "stale"}],
                }
            ],
        }
    )
    with pytest.raises(TimeoutError):
        await session.receive(timeout=0.5)
    status, _ = await _post(
        http, dev_server, "/api/mutation", {"path": "counters:increment", "args": {"name": "other"}}
    )
    assert status == 200
    transition = await session.receive()
    assert transition["type"] == "Transition"
    assert decode_ts(transition["endVersion"]["ts"], "ts") >= ahead
    await asyncio.sleep(0)


async def test_paginated_subscription_stays_gapless(
    raw: Any, http: aiohttp.ClientSession, dev_server: DevServer
) -> None:
    async def add(author: str) -> None:
        status, _ = await _post(
            http,
            dev_server,
            "/api/mutation",
            {"path": "notes:add", "args": {"author": author, "body": "."}},
        )
        assert status == 200

    for author in ("b", "d", "f", "h"):
        await add(author)
    session = await raw()
    await session.connect()
    first_page = {"numItems": 2.0, "cursor": None}
    await session.send(
        {
            "type": "ModifyQuerySet",
            "baseVersion": 0,
            "newVersion": 1,
            "modifications": [
                {
                    "type": "Add",
                    "queryId": 0,
                    "udfPath": "notes:page_by_author",
                    "args": [{"paginationOpts": first_page}],
                }
            ],
        }
    )
    first = (await session.receive_type("Transition"))["modifications"][0]
    page = first["value"]
    assert [n["author"] for n in page["page"]] == ["b", "d"] and page["isDone"] is False
    assert first["journal"] is not None
    # A write inside the first page grows that page instead of shifting its end.
    await add("c")
    update = (await session.receive_type("Transition"))["modifications"][0]["value"]
    assert [n["author"] for n in update["page"]] == ["b", "c", "d"]
    assert update["continueCursor"] == page["continueCursor"]
    second = {"numItems": 2.0, "cursor": page["continueCursor"]}
    status, body = await _post(
        http,
        dev_server,
        "/api/query",
        {"path": "notes:page_by_author", "args": {"paginationOpts": second}},
    )
    assert status == 200
    assert [n["author"] for n in body["value"]["page"]] == ["f", "h"]
    # A write past the page's end does not touch it.
    await add("z")
    with pytest.raises(TimeoutError):
        await session.receive_type("Transition", timeout=0.5)


async def test_a_revoked_admin_key_is_refused_at_once_and_others_still_work(
    dev_server: DevServer,
) -> None:
    async def secret(key: str) -> int:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{dev_server.url}/api/query",
                json={"path": "errors:secret", "args": {}},
                headers={"Authorization": f"Convex {key}"},
            ) as response,
        ):
            return response.status

    async def cli(*args: str) -> str:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "syncline",
            "admin-key",
            "--data",
            str(dev_server.data_dir),
            *args,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await process.communicate()
        assert process.returncode == 0
        return out.decode().strip()

    ci, ops = await cli("--name", "ci", "--scope", "read"), await cli("--name", "ops")
    assert await secret(ci) == 200 and await secret(ops) == 200
    assert "revoked" in await cli("--revoke", "ci")
    assert await secret(ci) == 401
    assert await secret(ops) == 200
