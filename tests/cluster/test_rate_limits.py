"""Per-address limits at the gateways, counted in the region's Redis: shared by
every gateway, and failing closed while Redis is down."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from syncline.devservers import LocalRedis
from syncline.ratelimit import BucketSpec, ClientLimits
from tests.cluster.conftest import GatewayFactory, SyncNodeFactory

pytestmark = pytest.mark.cluster


@pytest.fixture
async def redis(tmp_path: Path) -> AsyncIterator[LocalRedis]:
    server = LocalRedis(tmp_path / "redis")
    await server.start()
    yield server
    await server.stop()


async def _increment(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, object]]:
    response = await http.post(
        f"{url}/api/mutation",
        json={"path": "bank:increment", "args": {"name": "limited"}, "format": "json"},
    )
    return response.status, await response.json()


async def test_gateways_share_one_budget_and_refuse_without_redis(
    redis: LocalRedis, make_sync_node: SyncNodeFactory, make_gateway: GatewayFactory
) -> None:
    await make_sync_node()
    limits = ClientLimits(requests_per_ip=BucketSpec(0.01, 4), connections_per_ip=None)
    gateways = [await make_gateway(redis_url=redis.url, client_limits=limits) for _ in range(2)]
    async with aiohttp.ClientSession() as http:
        statuses = [(await _increment(http, gateways[n % 2].url))[0] for n in range(6)]
        assert statuses == [200, 200, 200, 200, 429, 429]
        await redis.stop()
        status, body = await _increment(http, gateways[0].url)
        assert (status, body["code"]) == (429, "RateLimited")
        assert "rate limiter is unavailable" in str(body["message"])
        await redis.start()  # empty: the budget starts over
        assert (await _increment(http, gateways[1].url))[0] == 200
