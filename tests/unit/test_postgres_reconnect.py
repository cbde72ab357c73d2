"""A pool replaces a connection lost to a PostgreSQL restart promptly, not after the
library's default 1 s, 2 s, 4 s... waits."""

from __future__ import annotations

import itertools

import pytest
from psycopg_pool.base import AttemptWithBackoff

import syncline.storage._postgres  # noqa: F401  (sets every pool's reconnect backoff)


def test_reconnect_attempts_start_at_a_tenth_of_a_second_and_grow_slowly() -> None:
    attempt = AttemptWithBackoff(timeout=60.0)
    delays = []
    for _ in range(7):
        attempt.update_delay(now=0.0)
        delays.append(attempt.delay)
    assert 0.09 <= delays[0] <= 0.11  # the library jitters the first delay by 10%
    assert all(
        later / earlier == pytest.approx(1.5) for earlier, later in itertools.pairwise(delays)
    )
    assert sum(delays[:5]) < 1.5  # five attempts within a short restart, not one
