"""Which requests are limited, and how much: per client address, per user, and the
buckets functions take from through ``ctx.rate_limiter``."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from syncline._errors import RateLimitedError
from syncline.ratelimit._limiter import BucketSpec, Decision, RateLimiter
from syncline.telemetry import rate_limit_refusals

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


DEFAULT_REQUESTS_PER_IP: Final = BucketSpec(100, 200)
DEFAULT_CONNECTIONS_PER_IP: Final = BucketSpec(10, 50)
DEFAULT_REQUESTS_PER_USER: Final = BucketSpec(50, 100)


@dataclass(frozen=True)
class ClientLimits:
    """Limits on what one client may ask (None: no limit)."""

    requests_per_ip: BucketSpec | None = DEFAULT_REQUESTS_PER_IP
    """HTTP function calls and sync-protocol mutations and actions, per client address."""
    connections_per_ip: BucketSpec | None = DEFAULT_CONNECTIONS_PER_IP
    """New sync connections per client address."""
    requests_per_user: BucketSpec | None = DEFAULT_REQUESTS_PER_USER
    """Function calls per signed-in user, on every node of the region together."""
    trusted_proxies: Sequence[Network] = field(default_factory=tuple)
    """Load balancers whose ``X-Forwarded-For`` names the client."""

    @staticmethod
    def off() -> ClientLimits:
        return ClientLimits(None, None, None)


def client_address(peer: str | None, headers: Mapping[str, str], trusted: Sequence[Network]) -> str:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the
    nearest address in ``X-Forwarded-For`` that is not one (the client itself
    could have written anything further left)."""
    address = peer or "unknown"
    if not trusted or not _within(address, trusted):
        return address
    hops = [hop.strip() for hop in headers.get("X-Forwarded-For", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _within(hop, trusted):
            return hop
    return address


def _within(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def refusal(decision: Decision, what: str) -> RateLimitedError:
    if decision.unavailable:
        return RateLimitedError(
            f"{what}: the rate limiter is unavailable, so the request was refused; "
            f"retry in {decision.retry_after_seconds:.1f} s",
            decision.retry_after_seconds,
        )
    return RateLimitedError(
        f"{what}: too many requests; retry in {decision.retry_after_seconds:.2f} s",
        decision.retry_after_seconds,
    )


async def check(limiter: RateLimiter, key: str, spec: BucketSpec | None, what: str) -> None:
    """Take a token from bucket ``key`` or raise :class:`RateLimitedError`."""
    if spec is None:
        return
    decision = await limiter.take(key, spec)
    if not decision.allowed:
        rate_limit_refusals.add(1, {"syncline.ratelimit.bucket": key.split(":", 1)[0]})
        raise refusal(decision, what)
