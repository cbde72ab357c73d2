"""When a region's reads move to the primary and back: the lag rule, on its own."""

from __future__ import annotations

from syncline.cluster._regional_storage import RegionalStorage
from syncline.storage import PostgresStorage


def regional() -> RegionalStorage:
    # Never opened: ``check`` only does arithmetic on what the monitor saw.
    return RegionalStorage(
        PostgresStorage("dbname=replica"), PostgresStorage("dbname=primary"), max_lag_seconds=2.0
    )


def test_reads_move_to_the_primary_once_a_commit_is_missing_longer_than_the_bound() -> None:
    storage = regional()
    storage.check(primary_ts=10, replica_ts=10, now=0.0)
    storage.check(primary_ts=20, replica_ts=10, now=1.0)  # 20 first seen at 1.0
    storage.check(primary_ts=30, replica_ts=10, now=2.5)
    assert not storage.on_primary and storage.lag_seconds == 1.5
    storage.check(primary_ts=30, replica_ts=10, now=3.5)
    assert storage.on_primary and storage.lag_seconds == 2.5


def test_an_unreachable_replica_moves_reads_at_once() -> None:
    storage = regional()
    storage.check(primary_ts=10, replica_ts=None, now=0.0)
    assert storage.on_primary


def test_reads_move_back_only_when_the_replica_has_what_the_primary_served() -> None:
    storage = regional()
    storage.check(primary_ts=10, replica_ts=None, now=0.0)
    storage.served_from_primary(25)
    storage.check(primary_ts=25, replica_ts=20, now=1.0)  # caught up with 10, not with 25
    assert storage.on_primary
    storage.check(primary_ts=25, replica_ts=25, now=1.5)
    assert not storage.on_primary and storage.lag_seconds == 0.0
