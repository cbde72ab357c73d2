"""Rate limits in embedded mode: per client address over HTTP and WebSocket, per
connection, per signed-in user, and an app's own through ctx.rate_limiter. A
refused call runs nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from syncline.client import Client, ClientError, FunctionError
from syncline.ratelimit import BucketSpec, ClientLimits
from syncline.runtime import ANONYMOUS
from syncline.server import EmbeddedConfig, EmbeddedServer
from tests.fixtures.jwt_issuer import JwtIssuer
from tests.fixtures.servers import TEST_AUDIENCE, TEST_ISSUER

pytestmark = pytest.mark.e2e

# Slow refills: a test's calls never earn a token back while it runs.
LIMITS = ClientLimits(
    requests_per_ip=BucketSpec(0.01, 3),
    connections_per_ip=BucketSpec(0.01, 2),
    requests_per_user=BucketSpec(0.01, 2),
)


async def _server(app: Path, data: Path, limits: ClientLimits) -> EmbeddedServer:
    server = EmbeddedServer(
        EmbeddedConfig(app_dir=app, data_dir=data, port=0, client_limits=limits)
    )
    await server.start()
    return server


@pytest.fixture
async def limited(basic_app: Path, tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    server = await _server(basic_app, tmp_path / "data", LIMITS)
    yield server
    await server.close()


@pytest.fixture
async def unlimited(basic_app: Path, tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    server = await _server(basic_app, tmp_path / "data", ClientLimits.off())
    yield server
    await server.close()


async def _count(server: EmbeddedServer, name: str) -> float:
    result = await server.runner.run_query("counters:get", {"name": name}, ANONYMOUS)
    return float(result.value)


async def test_http_calls_past_the_address_limit_get_429_and_run_nothing(
    limited: EmbeddedServer,
) -> None:
    statuses = []
    async with aiohttp.ClientSession() as http:
        for _ in range(5):
            response = await http.post(
                f"{limited.url}/api/mutation",
                json={"path": "counters:increment", "args": {"name": "h"}, "format": "json"},
            )
            statuses.append(response.status)
            body = await response.json()
        assert statuses == [200, 200, 200, 429, 429]
        assert body["code"] == "RateLimited"
        assert "too many requests" in body["message"]
        assert int(response.headers["Retry-After"]) >= 1
    assert await _count(limited, "h") == 3.0


async def test_sync_mutations_and_connections_past_the_limit_are_refused(
    limited: EmbeddedServer,
) -> None:
    async with Client(limited.url) as client:
        for _ in range(3):
            await client.mutation("counters:increment", {"name": "w"})
        with pytest.raises(FunctionError, match=r"RateLimited: client 127\.0\.0\.1: too many"):
            await client.mutation("counters:increment", {"name": "w"})
        # Subscriptions are not function calls: the session carries on.
        assert await client.query("counters:get", {"name": "w"}) == 3.0
        async with Client(limited.url):  # the second connection of the burst
            with pytest.raises(ClientError):
                await Client(limited.url, connect_timeout_seconds=1.0).connect()
    assert await _count(limited, "w") == 3.0


async def test_each_signed_in_user_has_a_limit_of_their_own(
    basic_app: Path, tmp_path: Path, jwt_issuer: JwtIssuer
) -> None:
    limits = ClientLimits(None, None, requests_per_user=BucketSpec(0.01, 2))
    server = await _server(basic_app, tmp_path / "data", limits)
    try:
        async with Client(server.url) as ada, Client(server.url) as bob:
            await ada.set_auth(jwt_issuer.token("ada", issuer=TEST_ISSUER, audience=TEST_AUDIENCE))
            await bob.set_auth(jwt_issuer.token("bob", issuer=TEST_ISSUER, audience=TEST_AUDIENCE))
            for _ in range(2):
                await ada.mutation("counters:increment", {"name": "u"})
            with pytest.raises(FunctionError, match="RateLimited: this user: too many"):
                await ada.action("limited:send_from_action", {"user": "x"})
            await bob.mutation("counters:increment", {"name": "u"})
        assert await _count(server, "u") == 3.0
    finally:
        await server.close()


async def test_functions_enforce_their_own_limits(unlimited: EmbeddedServer) -> None:
    async with Client(unlimited.url) as client:
        assert [await client.mutation("limited:send", {"user": "ada"}) for _ in range(2)] == [
            "sent",
            "sent",
        ]
        with pytest.raises(FunctionError, match="RateLimited: rate limit 'send': too many"):
            await client.mutation("limited:send", {"user": "ada"})
        with pytest.raises(FunctionError, match="rate limit 'send'"):
            await client.action("limited:send_from_action", {"user": "ada"})
        assert await client.mutation("limited:send", {"user": "bob"}) == "sent"
