"""Token buckets: in this process (embedded), or in Redis shared by every node of a
region (cluster), where a Lua script takes tokens atomically by Redis's clock.

A bucket holds up to ``burst`` tokens and gains ``per_second`` of them each
second; a request takes ``cost`` tokens or is refused with the time until it
could have them. When Redis cannot be reached, requests are refused: a limiter
that fails open would let an attacker through by overloading it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from redis.exceptions import RedisError

from syncline._errors import ConfigError
from syncline._redis import connect_redis

log = logging.getLogger(__name__)

REDIS_TIMEOUT_SECONDS = 1.0
UNAVAILABLE_RETRY_SECONDS = 1.0
PREFIX = "syncline:ratelimit:"


@dataclass(frozen=True)
class BucketSpec:
    """``per_second`` tokens a second, up to ``burst`` saved up."""

    per_second: float
    burst: float

    def __post_init__(self) -> None:
        if not (self.per_second > 0 and math.isfinite(self.per_second)):
            raise ConfigError(f"a rate must be a positive number per second, got {self.per_second}")
        if not (self.burst >= 1 and math.isfinite(self.burst)):
            raise ConfigError(f"a burst must be at least 1, got {self.burst}")

    @staticmethod
    def parse(text: str) -> BucketSpec | None:
        """``RATE`` or ``RATE/BURST`` (e.g. ``100/200``); ``off`` for no limit."""
        if text.strip().lower() == "off":
            return None
        match = re.fullmatch(r"\s*([0-9.]+)\s*(?:/\s*([0-9.]+))?\s*", text)
        if match is None:
            raise ConfigError(f"rate limit {text!r}: expected RATE or RATE/BURST (or off)")
        rate = float(match[1])
        return BucketSpec(rate, float(match[2]) if match[2] else max(1.0, rate))


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_seconds: float = 0.0
    unavailable: bool = False
    """Refused because the limiter's store could not be reached."""


class RateLimiter(ABC):
    """Takes tokens from named buckets."""

    @abstractmethod
    async def take(self, key: str, spec: BucketSpec, cost: float = 1.0) -> Decision:
        """Take ``cost`` tokens from bucket ``key`` if it has them."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections."""


def _refill(
    tokens: float, last: float, now: float, spec: BucketSpec, cost: float
) -> tuple[float, Decision]:
    tokens = min(spec.burst, tokens + max(0.0, now - last) * spec.per_second)
    if tokens >= cost:
        return tokens - cost, Decision(True)
    return tokens, Decision(False, (cost - tokens) / spec.per_second)


class MemoryRateLimiter(RateLimiter):
    """Buckets in this process; idle full buckets are forgotten."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._last_sweep = clock()

    async def take(self, key: str, spec: BucketSpec, cost: float = 1.0) -> Decision:
        now = self._clock()
        tokens, last = self._buckets.get(key, (spec.burst, now))
        tokens, decision = _refill(tokens, last, now, spec, cost)
        self._buckets[key] = (tokens, now)
        if now - self._last_sweep > 60:
            self._sweep(now, spec)
        return decision

    async def close(self) -> None:
        """Nothing to release."""

    def _sweep(self, now: float, spec: BucketSpec) -> None:
        self._last_sweep = now
        # A bucket idle long enough to be full again is the same as a missing one.
        idle = spec.burst / spec.per_second
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < idle}


# KEYS: bucket keys; ARGV: per key (rate, burst, cost). Returns per key the wait in
# microseconds (0: allowed). Redis's own clock, so every node agrees on time.
_TAKE = """
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local out = {}
for i, key in ipairs(KEYS) do
  local rate = tonumber(ARGV[3 * i - 2])
  local burst = tonumber(ARGV[3 * i - 1])
  local cost = tonumber(ARGV[3 * i])
  local state = redis.call('HMGET', key, 't', 'at')
  local tokens = tonumber(state[1]) or burst
  local at = tonumber(state[2]) or now_us
  tokens = math.min(burst, tokens + math.max(0, now_us - at) * rate / 1000000)
  local wait = 0
  if tokens >= cost then
    tokens = tokens - cost
  else
    wait = math.ceil((cost - tokens) * 1000000 / rate)
  end
  redis.call('HSET', key, 't', tostring(tokens), 'at', now_us)
  redis.call('PEXPIRE', key, math.ceil(burst * 1000 / rate) + 1000)
  table.insert(out, wait)
end
return out
"""


class RedisRateLimiter(RateLimiter):
    """Buckets in a region's Redis. Requests made in one event-loop turn share one
    script call, so a busy gateway pays one round trip per turn, not per request."""

    def __init__(self, url: str) -> None:
        self._client = connect_redis(url, timeout_seconds=REDIS_TIMEOUT_SECONDS)
        self._take = self._client.register_script(_TAKE)
        self._batch: list[tuple[str, BucketSpec, float, asyncio.Future[Decision]]] = []
        self._flushing: set[asyncio.Task[None]] = set()
        self._warned = False

    async def take(self, key: str, spec: BucketSpec, cost: float = 1.0) -> Decision:
        future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        if not self._batch:
            asyncio.get_running_loop().call_soon(self._flush)
        self._batch.append((PREFIX + key, spec, cost, future))
        return await future

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        task = asyncio.ensure_future(self._send(batch))
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _send(
        self, batch: list[tuple[str, BucketSpec, float, asyncio.Future[Decision]]]
    ) -> None:
        keys = [key for key, _, _, _ in batch]
        args: list[float] = []
        for _, spec, cost, _ in batch:
            args += [spec.per_second, spec.burst, cost]
        try:
            waits = await asyncio.wait_for(self._take(keys, args), REDIS_TIMEOUT_SECONDS)
        except (RedisError, OSError, TimeoutError) as exc:
            if not self._warned:
                log.warning("rate limiter unavailable, refusing requests: %s", exc)
                self._warned = True
            for *_, future in batch:
                if not future.done():
                    future.set_result(Decision(False, UNAVAILABLE_RETRY_SECONDS, unavailable=True))
            return
        self._warned = False
        for (*_, future), wait in zip(batch, waits, strict=True):
            if not future.done():
                wait_us = int(wait)
                future.set_result(Decision(wait_us == 0, wait_us / 1e6))

    async def close(self) -> None:
        for task in list(self._flushing):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._client.aclose()
