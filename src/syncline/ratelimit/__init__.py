"""Rate limits: token buckets per client address and user, checked where requests
arrive, and ``ctx.rate_limiter`` for an app's own rules."""

from syncline.ratelimit._ctx import FunctionRateLimiter
from syncline.ratelimit._limiter import (
    BucketSpec,
    Decision,
    MemoryRateLimiter,
    RateLimiter,
    RedisRateLimiter,
)
from syncline.ratelimit._limits import (
    DEFAULT_CONNECTIONS_PER_IP,
    DEFAULT_REQUESTS_PER_IP,
    DEFAULT_REQUESTS_PER_USER,
    ClientLimits,
    check,
    client_address,
    refusal,
)

__all__ = [
    "DEFAULT_CONNECTIONS_PER_IP",
    "DEFAULT_REQUESTS_PER_IP",
    "DEFAULT_REQUESTS_PER_USER",
    "BucketSpec",
    "ClientLimits",
    "Decision",
    "FunctionRateLimiter",
    "MemoryRateLimiter",
    "RateLimiter",
    "RedisRateLimiter",
    "check",
    "client_address",
    "refusal",
]
