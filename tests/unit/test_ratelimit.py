"""Token buckets, client addresses behind proxies, and ctx.rate_limiter's replay
of a conflicted mutation's decisions."""

from __future__ import annotations

import ipaddress

import pytest

from syncline._errors import ConfigError, RateLimitedError
from syncline.ratelimit import (
    BucketSpec,
    Decision,
    FunctionRateLimiter,
    MemoryRateLimiter,
    RateLimiter,
    client_address,
)


def test_bucket_specs_parse_and_refuse_nonsense() -> None:
    assert BucketSpec.parse("100/200") == BucketSpec(100, 200)
    assert BucketSpec.parse("5") == BucketSpec(5, 5)
    assert BucketSpec.parse("0.5") == BucketSpec(0.5, 1)
    assert BucketSpec.parse("off") is None
    for bad in ("", "fast", "1/2/3", "-1", "0", "10/0.5"):
        with pytest.raises(ConfigError):
            BucketSpec.parse(bad)


async def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    now = [0.0]
    limiter = MemoryRateLimiter(clock=lambda: now[0])
    spec = BucketSpec(per_second=2, burst=3)
    assert [(await limiter.take("k", spec)).allowed for _ in range(4)] == [True] * 3 + [False]
    refused = await limiter.take("k", spec)
    assert refused.retry_after_seconds == pytest.approx(0.5)
    now[0] = 0.5
    assert (await limiter.take("k", spec)).allowed
    assert not (await limiter.take("k", spec)).allowed
    assert (await limiter.take("other", spec)).allowed  # buckets are separate
    now[0] = 100.0  # a long pause refills only up to the burst
    assert [(await limiter.take("k", spec)).allowed for _ in range(4)] == [True] * 3 + [False]


def test_the_client_address_comes_from_trusted_proxies_only() -> None:
    proxies = (ipaddress.ip_network("10.0.0.0/8"),)
    forwarded = {"X-Forwarded-For": "6.6.6.6, 203.0.113.9, 10.1.1.1"}
    # Behind trusted proxies: the nearest address that is not one of them.
    assert client_address("10.0.0.2", forwarded, proxies) == "203.0.113.9"
    # A client talking directly cannot pick its address with the header.
    assert client_address("198.51.100.7", forwarded, proxies) == "198.51.100.7"
    assert client_address("10.0.0.2", forwarded, ()) == "10.0.0.2"
    assert client_address("10.0.0.2", {}, proxies) == "10.0.0.2"


class _Counting(RateLimiter):
    def __init__(self) -> None:
        self.takes = 0

    async def take(self, key: str, spec: BucketSpec, cost: float = 1.0) -> Decision:
        self.takes += 1
        return Decision(self.takes <= 1, 1.0)

    async def close(self) -> None:
        pass


async def test_a_rerun_mutation_gets_its_first_attempts_answers() -> None:
    counting = _Counting()
    limiter = FunctionRateLimiter(counting)
    await limiter.limit("send", key="u", per_second=1, burst=1)
    with pytest.raises(RateLimitedError, match="rate limit 'send': too many requests"):
        await limiter.limit("send", key="u", per_second=1, burst=1)
    limiter.new_attempt()  # an OCC conflict re-runs the function
    await limiter.limit("send", key="u", per_second=1, burst=1)
    with pytest.raises(RateLimitedError):
        await limiter.limit("send", key="u", per_second=1, burst=1)
    assert counting.takes == 2
    with pytest.raises(ConfigError):
        await limiter.limit("send", per_second=1, burst=1, cost=2)
    with pytest.raises(ConfigError, match=r"ctx\.rate_limiter is not available"):
        await FunctionRateLimiter(None).limit("x", per_second=1, burst=1)
