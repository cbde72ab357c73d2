"""Fuzzing the HTTP and WebSocket endpoints of a running ``syncline dev``.

Property-based, on a bounded budget: malformed bodies and frames, wrong types,
huge and deeply nested values, invalid UTF-8, version games and replays. Every
answer must be a typed error (never a 500 or a stack trace), the server must stay
up, and nothing may be committed: the commit log is the same before and after.
"""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.dev_server import DevServer

pytestmark = pytest.mark.e2e

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
OK_ERROR_STATUSES = {400, 401, 404, 405, 413, 415, 560}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
# Arguments that the app's mutations refuse: "name" is never a string there.
bad_args = st.fixed_dictionaries(
    {"name": st.none() | st.integers() | st.lists(st.integers(), max_size=2)},
    optional={"by": json_values, "unexpected": json_values},
)
paths = st.sampled_from(
    ["counters:increment", "notes:add", "counters:reset", "nope:missing", "", ":", "a" * 600]
) | st.text(max_size=30)


def _could_be_valid(value: Any) -> bool:
    """Arguments one of the app's mutations might accept (and then write)."""
    return isinstance(value, dict) and any(
        isinstance(value.get(field), str) for field in ("name", "author", "body")
    )


def commit_log(server: DevServer) -> tuple[Any, ...]:
    with sqlite3.connect(f"file:{server.data_dir / 'syncline.sqlite3'}?mode=ro", uri=True) as db:
        row = db.execute("SELECT COUNT(*), COALESCE(MAX(ts), 0) FROM commit_log").fetchone()
    return tuple(row)


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": [value]}
    return value


async def post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=io.BytesIO(body), headers={"Content-Type": content_type}) as response,
    ):
        text = await response.text(errors="replace")
        return response.status, text


def check_refused(status: int, text: str) -> None:
    assert status in OK_ERROR_STATUSES, (status, text[:300])
    assert "Traceback" not in text and 'File "' not in text, text[:300]


@FUZZ
@given(
    kind=st.sampled_from(["query", "mutation", "action", "function"]),
    path=paths,
    args=bad_args | json_values.filter(lambda v: not _could_be_valid(v)),
    mangle=st.sampled_from(["json", "args-not-object", "invalid-utf8", "truncated", "deep"]),
)
async def test_malformed_http_calls_are_refused_and_change_nothing(
    dev_server: DevServer, kind: str, path: str, args: Any, mangle: str
) -> None:
    before = commit_log(dev_server)
    body: Any = {"path": path, "args": args, "format": "json"}
    if mangle == "args-not-object":
        body["args"] = [args]
    raw = json.dumps(body).encode()
    if mangle == "invalid-utf8":
        raw = raw[:-2] + b"\xff\xfe" + raw[-2:]
    elif mangle == "truncated":
        raw = raw[: len(raw) // 2]
    elif mangle == "deep":
        raw = json.dumps({"path": "counters:increment", "args": {"name": nested(200)}}).encode()
    status, text = await post(f"{dev_server.url}/api/{kind}", raw)
    if status != 200:
        check_refused(status, text)
    # A valid call may only have hit a query or an action that does not write.
    assert commit_log(dev_server) == before


CONNECT = {"type": "Connect", "sessionId": "fuzz", "connectionCount": 0, "lastCloseReason": None}
frame_types = st.sampled_from(
    ["Connect", "ModifyQuerySet", "Mutation", "Action", "Authenticate", "Event", "Bogus"]
)
frames = (
    st.text(max_size=50)
    | json_values.map(json.dumps)
    | st.builds(
        lambda kind, fields: json.dumps({"type": kind, **fields}),
        frame_types,
        st.dictionaries(
            st.sampled_from(
                ["baseVersion", "newVersion", "requestId", "udfPath", "args", "modifications"]
            ),
            json_values | st.integers(min_value=-(2**70), max_value=2**70),
            max_size=5,
        ),
    )
    | st.builds(
        lambda request_id, name: json.dumps(
            {
                "type": "Mutation",
                "requestId": request_id,
                "udfPath": "counters:increment",
                "args": [{"name": name}],
            }
        ),
        st.integers(min_value=-5, max_value=5),
        st.none() | st.integers(),
    )
)


@FUZZ
@given(sequence=st.lists(frames, min_size=1, max_size=4), binary=st.booleans())
async def test_malformed_sync_frames_never_break_the_server_or_write(
    dev_server: DevServer, sequence: list[str], binary: bool
) -> None:
    before = commit_log(dev_server)
    ws_url = dev_server.url.replace("http://", "ws://") + "/api/sync"
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url) as ws:
        await ws.send_str(json.dumps(CONNECT))
        for frame in sequence:
            try:
                if binary:
                    await ws.send_bytes(frame.encode() + b"\xff")
                else:
                    await ws.send_str(frame)
            except ConnectionError:
                break  # the server closed the session over an earlier frame
        with_reply = True
        while with_reply and not ws.closed:
            try:
                message = await asyncio.wait_for(ws.receive(), 0.05)
            except TimeoutError:
                with_reply = False
                continue
            if message.type == aiohttp.WSMsgType.TEXT:
                assert "Traceback" not in message.data, message.data[:300]
    assert commit_log(dev_server) == before


async def test_an_oversized_body_is_refused_and_the_server_serves_on(
    dev_server: DevServer,
) -> None:
    huge = json.dumps({"path": "notes:add", "args": {"author": "a", "body": "x" * (9 << 20)}})
    status, text = await post(f"{dev_server.url}/api/mutation", huge.encode())
    check_refused(status, text)
    body = json.dumps({"path": "counters:increment", "args": {"name": "alive"}, "format": "json"})
    for expected in (1.0, 2.0):
        status, text = await post(f"{dev_server.url}/api/mutation", body.encode())
        assert status == 200 and json.loads(text)["value"] == expected
