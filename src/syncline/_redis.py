"""How Syncline connects to a region's Redis."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError


def connect_redis(
    url: str, *, timeout_seconds: float, decode_responses: bool = False
) -> aioredis.Redis:
    """A client whose calls fail after ``timeout_seconds`` rather than hang."""
    return aioredis.Redis.from_url(
        url,
        decode_responses=decode_responses,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        # A pooled connection to a Redis that restarted fails once: retry on a new one.
        retry=Retry(NoBackoff(), 1),
        retry_on_error=[ConnectionError],
    )
