"""syncline.client.Client, the native async client, against real servers.

Most tests run an EmbeddedServer in-process over a small app written to
``tmp_path``; the restart tests run ``syncline dev`` as a subprocess, kill it
with SIGKILL and start it again on the same port and data directory. A TCP
proxy between client and server loses replies and cuts connections on demand,
to show that resent mutations apply once and in-flight actions fail cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import syncline.client as client_pkg
from syncline import ProtocolError, SynclineError, api
from syncline.client import (
    Client,
    ClientError,
    ConnectionLostError,
    FunctionError,
    Subscription,
)
from syncline.client import _protocol as protocol
from syncline.server import EmbeddedConfig, EmbeddedServer
from syncline.sync import decode_ts, encode_ts
from syncline.values import values_equal
from tests.fixtures.infra import assert_eventually as eventually
from tests.fixtures.jwt_issuer import JwtIssuer

pytestmark = pytest.mark.e2e

ISSUER = "https://issuer.python-client.test"
AUDIENCE = "python-client-tests"
FAST_BACKOFF = (0.02, 0.5)

APP_FILES = {
    # Tables are declared so that they exist before the first insert: concurrent
    # first inserts into an undeclared table do not conflict (see the report).
    "schema.py": """
        from syncline import define_schema, define_table, v

        schema = define_schema(
            {
                "counters": define_table({"name": v.string(), "value": v.int64()}).index(
                    "by_name", ["name"]
                ),
                "blobs": define_table({"value": v.any()}),
            }
        )
    """,
    "counter.py": """
        from syncline import mutation, query, v


        async def _find(ctx, name):
            return await (
                ctx.db.query("counters").with_index("by_name", lambda q: q.eq("name", name)).first()
            )


        @query(args={"name": v.string()})
        async def get(ctx, name):
            doc = await _find(ctx, name)
            return 0 if doc is None else doc["value"]


        @mutation(args={"name": v.string(), "by": v.optional(v.int64())})
        async def increment(ctx, name, by=1):
            doc = await _find(ctx, name)
            if doc is None:
                await ctx.db.insert("counters", {"name": name, "value": by})
                return by
            await ctx.db.patch(doc["_id"], {"value": doc["value"] + by})
            return doc["value"] + by
    """,
    "values.py": """
        from syncline import action, mutation, query, v


        @query
        async def echo(ctx, value=None):
            return value


        @mutation(args={"value": v.any()})
        async def store(ctx, value):
            doc_id = await ctx.db.insert("blobs", {"value": value})
            return (await ctx.db.get(doc_id))["value"]


        @action
        async def echo_action(ctx, value=None):
            return await ctx.run_query("values:echo", {"value": value})
    """,
    "errors.py": """
        import asyncio

        from syncline import AppError, action, internal_query, mutation, query, v


        @mutation(args={"code": v.string()})
        async def fail(ctx, code):
            await ctx.db.insert("counters", {"name": "never", "value": 1})
            raise AppError({"code": code, "big": 2**40, "raw": b"\\x01"})


        @action
        async def fail_action(ctx):
            raise AppError("plain message")


        @query(args={"name": v.string()})
        async def odd_fails(ctx, name):
            doc = await (
                ctx.db.query("counters").with_index("by_name", lambda q: q.eq("name", name)).first()
            )
            value = 0 if doc is None else doc["value"]
            if value % 2:
                raise AppError({"odd": value})
            return value


        @action(args={"seconds": v.float64()})
        async def slow(ctx, seconds):
            await asyncio.sleep(seconds)
            return "done"


        @internal_query
        async def secret(ctx):
            return "internal only"
    """,
    "whoami.py": """
        from syncline import query


        @query
        async def me(ctx):
            identity = await ctx.auth.get_user_identity()
            return None if identity is None else identity["tokenIdentifier"]
    """,
}


def write_app(directory: Path, issuer: JwtIssuer) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, source in APP_FILES.items():
        (directory / name).write_text(textwrap.dedent(source))
    (directory / "auth_config.py").write_text(
        "providers = [{"
        f'"type": "customJwt", "issuer": "{ISSUER}", "jwks": "{issuer.jwks_data_uri()}", '
        f'"algorithm": "RS256", "applicationID": "{AUDIENCE}"'
        "}]\n"
    )
    return directory


# -- helpers ---------------------------------------------------------------------------


async def next_value(subscription: Subscription, timeout_seconds: float = 5.0) -> Any:
    return await asyncio.wait_for(anext(subscription), timeout_seconds)


async def until(
    subscription: Subscription, predicate: Callable[[Any], bool], timeout_seconds: float = 5.0
) -> Any:
    """Values from ``subscription`` until one satisfies ``predicate``; returns it."""
    async with asyncio.timeout(timeout_seconds):
        async for value in subscription:
            if predicate(value):
                return value
    raise AssertionError("the subscription ended")


def ready_value(subscription: Subscription) -> Any:
    """The subscription's next value, which must be there already, without waiting."""
    step: Any = anext(subscription)
    try:
        step.send(None)
    except StopIteration as done:
        return done.value
    step.close()
    raise AssertionError("the subscription had no new value ready; it would have waited")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


ClientFactory = Callable[..., Awaitable[Client]]


@pytest.fixture(scope="module")
def jwt_issuer() -> JwtIssuer:
    return JwtIssuer("RS256")


@pytest.fixture
def app_dir(tmp_path: Path, jwt_issuer: JwtIssuer) -> Path:
    return write_app(tmp_path / "app", jwt_issuer)


@pytest.fixture
async def server(app_dir: Path, tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    embedded = EmbeddedServer(EmbeddedConfig(app_dir=app_dir, data_dir=tmp_path / "data", port=0))
    await embedded.start()
    yield embedded
    await embedded.close()


@pytest.fixture
async def connect() -> AsyncIterator[ClientFactory]:
    """Open clients with fast reconnects; all are closed at the end of the test."""
    opened: list[Client] = []

    async def make(url: str, **kwargs: Any) -> Client:
        kwargs.setdefault("reconnect_backoff_seconds", FAST_BACKOFF)
        client = Client(url, **kwargs)
        opened.append(client)
        await client.connect()
        return client

    yield make
    for client in reversed(opened):
        await client.close()


class DevProcess:
    """``syncline dev`` in a subprocess, on a fixed port, killed and restarted at will."""

    def __init__(self, app_dir: Path, data_dir: Path, log_path: Path) -> None:
        self.app_dir = app_dir
        self.data_dir = data_dir
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    async def start(self, timeout_seconds: float = 20.0) -> None:
        assert self._process is None
        with self.log_path.open("ab") as log_file:
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "syncline.cli",
                    "dev",
                    str(self.app_dir),
                    "--port",
                    str(self.port),
                    "--data",
                    str(self.data_dir),
                    "--no-watch",
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        async with aiohttp.ClientSession() as http:

            async def answers() -> bool:
                assert self._process is not None
                if self._process.poll() is not None:
                    raise AssertionError(f"syncline dev exited:\n{self.log_path.read_text()}")
                try:
                    async with http.get(f"{self.url}/version") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            await eventually(answers, timeout_seconds=timeout_seconds, what="GET /version")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no closing frames; the kernel resets the connections."""
        process, self._process = self._process, None
        assert process is not None
        os.kill(process.pid, signal.SIGKILL)
        process.wait()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture
async def dev_process(app_dir: Path, tmp_path: Path) -> AsyncIterator[DevProcess]:
    process = DevProcess(app_dir, tmp_path / "dev-data", tmp_path / "dev.log")
    await process.start()
    yield process
    process.stop()
    # Shown by pytest only when the test failed.
    print(process.log_path.read_text())


class Proxy:
    """A TCP proxy to a server that can lose the server's bytes and cut every connection."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.lose_replies = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            self._writers.add(up_writer)
            try:
                async with asyncio.TaskGroup() as pumps:
                    pumps.create_task(self._pump(reader, up_writer, replies=False), name="up")
                    pumps.create_task(self._pump(up_reader, writer, replies=True), name="down")
            finally:
                self._writers.discard(up_writer)
                await _close_writer(up_writer)
        finally:
            self._writers.discard(writer)
            await _close_writer(writer)
            self._handlers.discard(task)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, replies: bool
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if replies and self.lose_replies:
                    continue
                writer.write(data)
                await writer.drain()
        # One side closed: close the other, which ends the opposite pump too.
        writer.close()

    async def cut(self) -> None:
        """Drop every proxied connection at once, as a network failure would."""
        for writer in list(self._writers):
            writer.transport.abort()
        handlers = list(self._handlers)
        if handlers:
            await asyncio.wait(handlers)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await self.cut()


async def _close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


@pytest.fixture
async def proxy(server: EmbeddedServer) -> AsyncIterator[Proxy]:
    front = Proxy(server.port)
    await front.start()
    yield front
    await front.close()


# -- the package -----------------------------------------------------------------------


def test_all_is_sorted_and_complete() -> None:
    assert client_pkg.__all__ == sorted(client_pkg.__all__)
    for name in client_pkg.__all__:
        assert getattr(client_pkg, name).__module__.startswith("syncline.client")
    assert {"Client", "ClientError", "ConnectionLostError", "FunctionError"} <= set(
        client_pkg.__all__
    )


def test_error_tree() -> None:
    assert issubclass(ClientError, SynclineError)
    assert issubclass(FunctionError, ClientError)
    assert issubclass(ConnectionLostError, ClientError)
    assert ClientError.code == "ClientError"
    assert ConnectionLostError.retryable
    error = FunctionError("boom", data={"x": 1}, path="m:f")
    assert (error.message, error.data, error.path) == ("boom", {"x": 1}, "m:f")


def test_protocol_frames_and_parsing() -> None:
    # Pure protocol code, no server: what goes out and how what comes in is read.
    connect_json = json.loads(
        protocol.connect_frame(
            session_id="s",
            connection_count=2,
            last_close_reason=None,
            max_observed_ts=7,
            client_ts_ms=1,
        )
    )
    assert connect_json["connectionCount"] == 2
    assert decode_ts(connect_json["maxObservedTimestamp"], "ts") == 7
    assert json.loads(protocol.authenticate_frame(3, protocol.TokenType.NONE, None)) == {
        "type": "Authenticate",
        "baseVersion": 3,
        "tokenType": "None",
    }
    version = {"querySet": 1, "identity": 0, "ts": encode_ts(5)}
    transition = protocol.parse_server_message(
        json.dumps(
            {
                "type": "Transition",
                "startVersion": {"querySet": 0, "identity": 0, "ts": encode_ts(0)},
                "endVersion": version,
                "modifications": [
                    {"type": "QueryUpdated", "queryId": 0, "value": {"$integer": "AQAAAAAAAAA="}},
                    {"type": "QueryFailed", "queryId": 1, "errorMessage": "m", "errorData": None},
                    {"type": "QueryFailed", "queryId": 2, "errorMessage": "m"},
                ],
            }
        )
    )
    assert isinstance(transition, protocol.Transition)
    assert transition.end == protocol.StateVersion(1, 0, 5)
    updated, failed_app_error, failed = transition.modifications
    assert isinstance(updated, protocol.QueryResult) and updated.value == 1
    assert type(updated.value) is int
    assert isinstance(failed, protocol.QueryResult) and failed.failed
    assert isinstance(failed_app_error, protocol.QueryResult) and failed_app_error.failed
    assert protocol.parse_server_message('{"type":"SomethingNew"}') is None
    for malformed in (
        "[]",
        "{",
        '{"type":"Transition","startVersion":{}}',
        '{"type":"MutationResponse","requestId":1,"success":true,"ts":"x"}',
    ):
        with pytest.raises(ProtocolError):
            protocol.parse_server_message(malformed)


def test_reconnect_backoff_grows_with_jitter_to_its_maximum() -> None:
    client = Client(
        "http://127.0.0.1:1", reconnect_backoff_seconds=(0.1, 2.0), rng=random.Random(1)
    )
    delays = [client._delay(attempt) for attempt in range(12)]
    assert all(0.05 <= d <= 0.1 for d in delays[:1])
    assert all(1.0 <= d <= 2.0 for d in delays[6:])
    assert len(set(delays)) == len(delays)  # jittered, not lockstep
    with pytest.raises(ValueError):
        Client("http://x", reconnect_backoff_seconds=(1.0, 0.5))
    with pytest.raises(ValueError):
        Client("ftp://x")


def test_top_level_client_is_the_native_client() -> None:
    import syncline

    assert syncline.Client is Client


# -- calls -----------------------------------------------------------------------------


async def test_values_round_trip_exactly(server: EmbeddedServer, connect: ClientFactory) -> None:
    client = await connect(server.url)
    value = {
        "int": 2**62 + 1,
        "min": -(2**63),
        "max": 2**63 - 1,
        "whole_float": 3.0,
        "float": 0.1,
        "negative_zero": -0.0,
        "bytes": b"\x00\xff\x10",
        "empty_bytes": b"",
        "nested": [1, [None, True, "é☃"], {"inner": b"\x01"}],
    }
    for result in (
        await client.query("values:echo", {"value": value}),
        await client.mutation("values:store", {"value": value}),
        await client.action("values:echo_action", {"value": value}),
    ):
        # values_equal tells int64 from float64 and -0.0 from 0.0, unlike ==.
        assert values_equal(result, value), result
        assert type(result["int"]) is int
        assert type(result["whole_float"]) is float
        assert result["bytes"] == b"\x00\xff\x10"


async def test_function_references(server: EmbeddedServer, connect: ClientFactory) -> None:
    client = await connect(server.url)
    assert await client.mutation(api.counter.increment, {"name": "ref", "by": 5}) == 5
    assert await client.query(api.counter.get, {"name": "ref"}) == 5
    assert await client.query("counter.py:get", {"name": "ref"}) == 5


async def test_app_error_data_reaches_function_error(
    server: EmbeddedServer, connect: ClientFactory
) -> None:
    client = await connect(server.url)
    with pytest.raises(FunctionError) as mutation_error:
        await client.mutation("errors:fail", {"code": "NOPE"})
    assert mutation_error.value.data == {"code": "NOPE", "big": 2**40, "raw": b"\x01"}
    assert type(mutation_error.value.data["big"]) is int
    assert mutation_error.value.path == "errors:fail"
    # The failed mutation's write did not commit.
    assert await client.query("counter:get", {"name": "never"}) == 0
    with pytest.raises(FunctionError) as action_error:
        await client.action("errors:fail_action")
    assert action_error.value.data == "plain message"


async def test_unknown_function_names_the_path(
    server: EmbeddedServer, connect: ClientFactory
) -> None:
    client = await connect(server.url)
    calls = (client.query, client.mutation, client.action)
    for call in calls:
        with pytest.raises(FunctionError, match="nope:missing") as error:
            await call("nope:missing", {})
        assert error.value.data is None
    with pytest.raises(FunctionError, match="errors:secret"):
        await client.query("errors:secret")
    async with client.subscribe("nope:missing") as subscription:
        with pytest.raises(FunctionError, match="nope:missing"):
            await next_value(subscription)


async def test_admin_key_reaches_internal_functions(
    server: EmbeddedServer, connect: ClientFactory
) -> None:
    admin = await connect(server.url, admin_key=server.admin_key)
    assert await admin.query("errors:secret") == "internal only"


async def test_bad_admin_key_fails_connect(server: EmbeddedServer) -> None:
    client = Client(server.url, admin_key="not-a-key", reconnect_backoff_seconds=FAST_BACKOFF)
    with pytest.raises(ClientError, match="rejected the credentials"):
        await client.connect()
    with pytest.raises(ClientError):
        await client.query("counter:get", {"name": "x"})


async def test_connect_to_nothing_times_out() -> None:
    client = Client(
        f"http://127.0.0.1:{free_port()}",
        connect_timeout_seconds=0.3,
        reconnect_backoff_seconds=FAST_BACKOFF,
    )
    started = time.monotonic()
    with pytest.raises(ConnectionLostError, match="could not connect"):
        await client.connect()
    assert time.monotonic() - started < 2.0


async def test_calls_need_an_open_client(server: EmbeddedServer) -> None:
    client = Client(server.url)
    with pytest.raises(ClientError, match="not connected"):
        await client.query("counter:get", {"name": "x"})
    async with client:
        assert await client.query("counter:get", {"name": "x"}) == 0
    await client.close()  # idempotent
    with pytest.raises(ClientError, match="closed"):
        await client.mutation("counter:increment", {"name": "x"})
    with pytest.raises(ClientError, match="closed"):
        await client.connect()
    with pytest.raises(ClientError, match="arguments must be a mapping"):
        async with Client(server.url) as other:
            await other.query("counter:get", ["not", "a", "mapping"])  # type: ignore[arg-type]


# -- subscriptions ---------------------------------------------------------------------


async def test_subscription_sees_another_clients_mutation(
    server: EmbeddedServer, connect: ClientFactory
) -> None:
    watcher = await connect(server.url)
    writer = await connect(server.url)
    async with watcher.subscribe("counter:get", {"name": "live"}) as subscription:
        assert await next_value(subscription) == 0
        await writer.mutation("counter:increment", {"name": "live", "by": 2})
        assert await next_value(subscription) == 2
        await writer.mutation("counter:increment", {"name": "live", "by": 3})
        assert await next_value(subscription) == 5


async def test_read_your_writes(server: EmbeddedServer, connect: ClientFactory) -> None:
    client = await connect(server.url)
    async with (
        client.subscribe("counter:get", {"name": "ryw"}) as counter,
        client.subscribe("errors:odd_fails", {"name": "ryw"}) as parity,
    ):
        assert await next_value(counter) == 0
        assert await next_value(parity) == 0
        for expected in range(1, 11):
            assert await client.mutation("counter:increment", {"name": "ryw"}) == expected
            # Both queries moved with the mutation, before it returned.
            assert ready_value(counter) == expected
            if expected % 2:
                with pytest.raises(FunctionError) as error:
                    ready_value(parity)
                assert error.value.data == {"odd": expected}
            else:
                assert ready_value(parity) == expected
            assert await client.query("counter:get", {"name": "ryw"}) == expected


async def test_identical_subscriptions_share_one_query(
    server: EmbeddedServer, connect: ClientFactory
) -> None:
    client = await connect(server.url)
    first = client.subscribe("counter:get", {"name": "shared"})
    second = client.subscribe(api.counter.get, {"name": "shared"})
    other = client.subscribe("counter:get", {"name": "other"})
    assert len(client._queries_by_id) == 2
    assert await next_value(first) == 0
    assert await next_value(second) == 0
    first.close()
    await client.mutation("counter:increment", {"name": "shared"})
    assert ready_value(second) == 1
    with pytest.raises(StopAsyncIteration):
        ready_value(first)
    second.close()
    other.close()
    assert client._queries_by_id == {}
    # A fresh subscription after removal gets the current value from a new query.
    async with client.subscribe("counter:get", {"name": "shared"}) as again:
        assert await next_value(again) == 1


async def test_unchanged_results_are_not_yielded_again(
    server: EmbeddedServer, connect: ClientFactory
) -> None:
    client = await connect(server.url)
    async with client.subscribe("counter:get", {"name": "a"}) as subscription:
        assert await next_value(subscription) == 0
        # Commits elsewhere re-run nothing this query reads; then its own value moves.
        await client.mutation("counter:increment", {"name": "b"})
        await client.mutation("counter:increment", {"name": "a"})
        assert await next_value(subscription) == 1


async def test_concurrent_increments_from_four_clients(
    server: EmbeddedServer, connect: ClientFactory
) -> None:
    clients = [await connect(server.url) for _ in range(4)]
    subscriptions = [c.subscribe("counter:get", {"name": "race"}) for c in clients]
    try:
        results = await asyncio.gather(
            *(clients[i % 4].mutation("counter:increment", {"name": "race"}) for i in range(20))
        )
        assert sorted(results) == list(range(1, 21))
        for client in clients:
            assert await client.query("counter:get", {"name": "race"}) == 20
        for subscription in subscriptions:
            assert await until(subscription, lambda v: v == 20) == 20
    finally:
        for subscription in subscriptions:
            subscription.close()


async def test_set_auth_changes_identity_and_rejects_bad_tokens(
    server: EmbeddedServer, connect: ClientFactory, jwt_issuer: JwtIssuer
) -> None:
    client = await connect(server.url)
    async with client.subscribe("whoami:me") as me:
        assert await next_value(me) is None
        await client.set_auth(jwt_issuer.token("alice", issuer=ISSUER, audience=AUDIENCE))
        assert ready_value(me) == f"{ISSUER}|alice"
        assert await client.query("whoami:me") == f"{ISSUER}|alice"
        await client.set_auth(None)
        assert ready_value(me) is None
        await client.set_auth(jwt_issuer.token("bob", issuer=ISSUER, audience=AUDIENCE))
        assert ready_value(me) == f"{ISSUER}|bob"
        with pytest.raises(ClientError, match="rejected the credentials"):
            await client.set_auth("not-a-jwt")
        # The server closed that connection; the client carries on anonymously.
        assert await next_value(me) is None
        assert await client.query("whoami:me") is None


async def test_close_ends_subscriptions_and_fails_pending_calls(
    server: EmbeddedServer, connect: ClientFactory
) -> None:
    client = await connect(server.url)
    subscription = client.subscribe("counter:get", {"name": "end"})
    assert await next_value(subscription) == 0
    slow = asyncio.create_task(client.action("errors:slow", {"seconds": 5.0}), name="slow-action")
    await eventually(lambda: bool(client._requests), what="the action to be sent")
    await client.close()
    with pytest.raises(ClientError, match="closed"):
        await slow
    assert [value async for value in subscription] == []


# -- connection loss -------------------------------------------------------------------


async def test_resent_mutation_applies_once_when_its_reply_is_lost(
    server: EmbeddedServer, proxy: Proxy, connect: ClientFactory
) -> None:
    client = await connect(proxy.url)
    observer = await connect(server.url)
    async with client.subscribe("counter:get", {"name": "lost"}) as subscription:
        assert await next_value(subscription) == 0
        proxy.lose_replies = True
        pending = asyncio.create_task(
            client.mutation("counter:increment", {"name": "lost"}), name="lost-reply-mutation"
        )

        async def committed() -> bool:
            value: int = await observer.query("counter:get", {"name": "lost"})
            return value == 1

        await eventually(committed, what="the mutation to commit")
        assert not pending.done()
        proxy.lose_replies = False
        await proxy.cut()
        # Resent with the same request id after the reconnect: answered, not re-applied.
        assert await asyncio.wait_for(pending, 5.0) == 1
        assert ready_value(subscription) == 1
        assert await observer.query("counter:get", {"name": "lost"}) == 1
        assert await client.mutation("counter:increment", {"name": "lost"}) == 2


async def test_action_in_flight_fails_when_the_connection_drops(
    server: EmbeddedServer, proxy: Proxy, connect: ClientFactory
) -> None:
    client = await connect(proxy.url)
    slow = asyncio.create_task(client.action("errors:slow", {"seconds": 5.0}), name="slow-action")
    await eventually(lambda: bool(client._requests), what="the action to be sent")
    await proxy.cut()
    with pytest.raises(ConnectionLostError, match="errors:slow"):
        await asyncio.wait_for(slow, 5.0)
    # The client reconnected and works.
    assert await client.action("errors:slow", {"seconds": 0.0}) == "done"


async def test_subscription_survives_server_kill_and_restart(
    dev_process: DevProcess, connect: ClientFactory
) -> None:
    client = await connect(dev_process.url)
    async with client.subscribe("counter:get", {"name": "restart"}) as subscription:
        assert await next_value(subscription) == 0
        assert await client.mutation("counter:increment", {"name": "restart"}) == 1
        assert ready_value(subscription) == 1
        dev_process.kill()
        await eventually(lambda: not client.connected, what="the client to notice the kill")
        await dev_process.start()
        await eventually(lambda: client.connected, what="the client to reconnect")
        other = await connect(dev_process.url)
        assert await other.mutation("counter:increment", {"name": "restart"}) == 2
        # The re-added query's unchanged value 1 is not yielded again.
        assert await next_value(subscription) == 2


async def test_mutation_while_server_is_down_applies_once(
    dev_process: DevProcess, connect: ClientFactory
) -> None:
    client = await connect(dev_process.url)
    assert await client.mutation("counter:increment", {"name": "down"}) == 1
    dev_process.kill()
    await eventually(lambda: not client.connected, what="the client to notice the kill")
    pending = asyncio.create_task(
        client.mutation("counter:increment", {"name": "down", "by": 10}), name="offline-mutation"
    )
    await asyncio.sleep(0)
    assert not pending.done()
    await dev_process.start()
    assert await asyncio.wait_for(pending, 5.0) == 11
    assert await client.query("counter:get", {"name": "down"}) == 11
    other = await connect(dev_process.url)
    assert await other.query("counter:get", {"name": "down"}) == 11


async def test_more_mutations_than_the_server_queues_at_once(
    server: EmbeddedServer, connect: ClientFactory
) -> None:
    # The server ends a session with over 1024 queued mutations; the client's window
    # keeps it under that, and mutations still apply in the order they were made.
    client = await connect(server.url)
    results = await asyncio.gather(
        *(client.mutation("counter:increment", {"name": "bulk"}) for _ in range(1100))
    )
    assert results == list(range(1, 1101))
    assert client._connection_count == 1, "the server dropped the session"
