"""syncline.client.Client, the native async client: the package, calls and subscriptions.

Most tests run an EmbeddedServer in-process over a small app written to
``tmp_path``; the restart tests run ``syncline dev`` as a subprocess, kill it
with SIGKILL and start it again on the same port and data directory. A TCP
proxy between client and server loses replies and cuts connections on demand,
to show that resent mutations apply once and in-flight actions fail cleanly.
"""

from __future__ import annotations

import asyncio
import json
import random
import time

import pytest

import syncline.client as client_pkg
from syncline import ProtocolError, SynclineError, api
from syncline.client import (
    Client,
    ClientError,
    ConnectionLostError,
    FunctionError,
)
from syncline.client import _protocol as protocol
from syncline.server import EmbeddedServer
from syncline.sync import decode_ts, encode_ts
from syncline.values import values_equal
from tests.e2e.python_client.support import (
    AUDIENCE,
    FAST_BACKOFF,
    ISSUER,
    ClientFactory,
    free_port,
    next_value,
    ready_value,
    until,
)
from tests.fixtures.infra import assert_eventually as eventually
from tests.fixtures.jwt_issuer import JwtIssuer

pytestmark = pytest.mark.e2e


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
