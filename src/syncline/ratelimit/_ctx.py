"""``ctx.rate_limiter``: token buckets an app takes from for its own rules
(one message a second per user, five sign-up attempts a minute per address)."""

from __future__ import annotations

from syncline._errors import ConfigError
from syncline.ratelimit._limiter import BucketSpec, Decision, RateLimiter
from syncline.ratelimit._limits import refusal
from syncline.telemetry import rate_limit_refusals

MAX_NAME_LENGTH = 256


class FunctionRateLimiter:
    """``ctx.rate_limiter`` of one function call.

    A mutation re-run after a conflict makes the same calls again: they get the
    first attempt's answers rather than taking tokens twice.
    """

    def __init__(self, limiter: RateLimiter | None) -> None:
        self._limiter = limiter
        self._decisions: list[Decision] = []
        self._calls = 0

    def new_attempt(self) -> None:
        self._calls = 0

    async def limit(
        self,
        name: str,
        *,
        key: str = "",
        per_second: float,
        burst: float,
        cost: float = 1.0,
    ) -> None:
        """Take ``cost`` tokens from bucket ``name``/``key`` (``per_second`` refill,
        ``burst`` at most), or raise ``RateLimitedError`` saying when to retry."""
        if self._limiter is None:
            raise ConfigError("ctx.rate_limiter is not available on this server")
        for text, what in ((name, "name"), (key, "key")):
            if not isinstance(text, str) or len(text) > MAX_NAME_LENGTH:
                raise ConfigError(
                    f"rate_limiter.limit: {what} must be a string of at most "
                    f"{MAX_NAME_LENGTH} characters"
                )
        spec = BucketSpec(float(per_second), float(burst))
        if not 0 < cost <= spec.burst:
            raise ConfigError(f"rate_limiter.limit: cost must be in (0, burst], got {cost}")
        index, self._calls = self._calls, self._calls + 1
        if index < len(self._decisions):
            decision = self._decisions[index]
        else:
            decision = await self._limiter.take(f"fn:{name}:{key}", spec, cost)
            self._decisions.append(decision)
        if not decision.allowed:
            rate_limit_refusals.add(1, {"syncline.ratelimit.bucket": "fn"})
            raise refusal(decision, f"rate limit {name!r}")
