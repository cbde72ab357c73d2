"""The committer over real storage (SQLite and PostgreSQL): ts assignment, group
commit, OCC, idempotency, failures, fencing."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from syncline import OccConflictError, SynclineError
from syncline._errors import FencedError, UnavailableError
from syncline.storage import CommitEntry, DocumentWrite, IndexKeyChange, Storage
from syncline.txn import CommitOutcome, CommitRequest, Committer, CommitterConfig, Interval, ReadSet
from tests.engine.conftest import StorageFactory

INDEX = 7
TABLE = 1


class CountingStorage:
    """Wraps a storage and records the size of every batch written."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.batches: list[int] = []
        self.key_lookups: list[list[str]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def write_batch(self, batch: Sequence[CommitEntry], *, epoch: int | None = None) -> None:
        self.batches.append(len(batch))
        await self.inner.write_batch(batch, epoch=epoch)

    async def find_idempotent_many(self, keys: Sequence[str]) -> dict[str, tuple[int, str]]:
        self.key_lookups.append(list(keys))
        found: dict[str, tuple[int, str]] = await self.inner.find_idempotent_many(keys)
        return found


class FlakyStorage(CountingStorage):
    """``write_batch`` fails ``failures`` times, after the batch has been handed over."""

    def __init__(self, inner: Storage) -> None:
        super().__init__(inner)
        self.failures = 0

    async def write_batch(self, batch: Sequence[CommitEntry], *, epoch: int | None = None) -> None:
        if self.failures > 0:
            self.failures -= 1
            self.batches.append(len(batch))
            raise OSError("disk I/O error")
        await super().write_batch(batch, epoch=epoch)


def key(name: str) -> bytes:
    return name.encode()


def insert(name: str) -> DocumentWrite:
    """An insert of document ``name`` whose one index entry is ``key(name)``."""
    return DocumentWrite(
        name, TABLE, {"_id": name, "v": name}, (IndexKeyChange(INDEX, None, key(name)),)
    )


def reading(*names: str) -> ReadSet:
    reads = ReadSet()
    for name in names:
        reads.add(INDEX, Interval(key(name), key(name) + b"\x00"))
    return reads


def request(
    *names: str,
    snapshot_ts: int = 0,
    reads: ReadSet | None = None,
    idempotency_key: str | None = None,
    result_json: str = "null",
) -> CommitRequest:
    return CommitRequest(
        snapshot_ts,
        reads or ReadSet(),
        [insert(n) for n in names],
        idempotency_key,
        result_json,
    )


async def stored(storage: Storage, doc_id: str) -> dict[str, object] | None:
    async with storage.snapshot() as snapshot:
        return await snapshot.get(doc_id)


@pytest.fixture
async def storage(new_storage: StorageFactory) -> AsyncIterator[CountingStorage]:
    storage = CountingStorage(new_storage())
    await storage.open()
    yield storage
    await storage.close()


def step_clock() -> int:
    """A clock stuck at 0: every ts is then ``last + 1``, which makes them predictable."""
    return 0


# -- ts --------------------------------------------------------------------------


async def test_ts_strictly_increase_and_match_storage(storage: CountingStorage) -> None:
    async with Committer(storage) as committer:
        outcomes = [await committer.commit(request(f"d{i}")) for i in range(5)]
        outcomes += await asyncio.gather(*(committer.commit(request(f"e{i}")) for i in range(5)))
        ts = [o.ts for o in outcomes]
        assert ts == sorted(ts) and len(set(ts)) == 10
        assert committer.last_ts == ts[-1]
    assert await storage.max_ts() == ts[-1]


async def test_ts_after_reopen_exceed_previous_max_even_if_clock_goes_back(
    new_storage: StorageFactory,
) -> None:
    storage = new_storage()
    await storage.open()
    async with Committer(storage, clock_ns=lambda: 10**18) as committer:
        first = await committer.commit(request("a"))
    await storage.close()
    assert first.ts == 10**18

    storage = new_storage()
    await storage.open()
    try:
        async with Committer(storage, clock_ns=lambda: 5) as committer:
            assert committer.last_ts == 10**18
            assert committer.next_ts() == 10**18 + 1
            # After a restart the window starts at the stored max: current snapshots pass.
            second = await committer.commit(request("b", snapshot_ts=10**18))
            third = await committer.commit(request("c", snapshot_ts=second.ts))
            with pytest.raises(OccConflictError, match="older than the committer's window"):
                await committer.commit(request("d", snapshot_ts=10**18 - 1, reads=reading("a")))
        assert (second.ts, third.ts) == (10**18 + 1, 10**18 + 2)
        assert await storage.max_ts() == third.ts
    finally:
        await storage.close()


async def test_ts_follow_the_clock_when_it_is_ahead(storage: CountingStorage) -> None:
    now = [1_000]
    async with Committer(storage, clock_ns=lambda: now[0]) as committer:
        assert (await committer.commit(request("a"))).ts == 1_000
        now[0] = 5_000
        assert (await committer.commit(request("b"))).ts == 5_000
        assert (await committer.commit(request("c"))).ts == 5_001


# -- group commit -----------------------------------------------------------------


async def test_concurrent_commits_share_storage_writes(storage: CountingStorage) -> None:
    async with Committer(storage, clock_ns=step_clock) as committer:
        outcomes = await asyncio.gather(*(committer.commit(request(f"d{i}")) for i in range(50)))
    assert sorted(o.ts for o in outcomes) == list(range(1, 51))
    assert sum(storage.batches) == 50
    assert len(storage.batches) < 50
    assert max(storage.batches) > 1
    for i in range(50):
        assert await stored(storage, f"d{i}") == {"_id": f"d{i}", "v": f"d{i}"}


async def test_max_batch_bounds_each_storage_write(storage: CountingStorage) -> None:
    config = CommitterConfig(max_batch=8)
    async with Committer(storage, config=config, clock_ns=step_clock) as committer:
        outcomes = await asyncio.gather(*(committer.commit(request(f"d{i}")) for i in range(50)))
    assert len({o.ts for o in outcomes}) == 50
    assert sum(storage.batches) == 50
    assert max(storage.batches) == 8
    assert len(storage.batches) >= 7


async def test_on_commit_reports_the_last_ts_of_each_batch(storage: CountingStorage) -> None:
    reported: list[int] = []
    committer = Committer(storage, clock_ns=step_clock, on_commit=reported.append)
    async with committer:
        await asyncio.gather(*(committer.commit(request(f"d{i}")) for i in range(10)))
        await committer.commit(request("x"))
    assert reported[-1] == 11
    assert reported == sorted(reported)


# -- OCC ---------------------------------------------------------------------------


async def test_conflict_when_a_concurrent_commit_wrote_a_read_key(
    storage: CountingStorage,
) -> None:
    async with Committer(storage, clock_ns=step_clock) as committer:
        base = await committer.commit(request("a"))
        await committer.commit(request("b"))  # after the snapshot below, inside its reads
        with pytest.raises(OccConflictError):
            await committer.commit(request("c", snapshot_ts=base.ts, reads=reading("a", "b")))
        assert await stored(storage, "c") is None
        assert committer.last_ts == 2


async def test_no_conflict_when_reads_and_writes_are_disjoint(storage: CountingStorage) -> None:
    async with Committer(storage, clock_ns=step_clock) as committer:
        base = await committer.commit(request("a"))
        await committer.commit(request("b"))
        outcome = await committer.commit(
            request("c", snapshot_ts=base.ts, reads=reading("a", "bb", "z"))
        )
        assert outcome.ts == 3
        assert await stored(storage, "c") is not None


async def test_conflict_within_one_batch(storage: CountingStorage) -> None:
    # The second request read what the first (same batch, earlier) writes.
    async with Committer(storage, clock_ns=step_clock) as committer:
        first, second = await asyncio.gather(
            committer.commit(request("a")),
            committer.commit(request("b", reads=reading("a"))),
            return_exceptions=True,
        )
    assert isinstance(first, CommitOutcome) and first.ts == 1
    assert isinstance(second, OccConflictError)
    assert storage.batches == [1]


async def test_snapshot_older_than_the_window_is_refused(storage: CountingStorage) -> None:
    now = [0]
    config = CommitterConfig(window_seconds=1.0)
    async with Committer(storage, config=config, clock_ns=lambda: now[0]) as committer:
        old = await committer.commit(request("a"))
        now[0] = 5 * 10**9
        mid = await committer.commit(request("b", snapshot_ts=old.ts))
        assert committer.last_ts == mid.ts
        now[0] = 10 * 10**9
        # Trims every commit more than 1 s older than this one: the window floor
        # becomes mid.ts, the newest commit forgotten.
        await committer.commit(request("c", snapshot_ts=mid.ts))
        with pytest.raises(OccConflictError, match="older than the committer's window"):
            await committer.commit(request("d", snapshot_ts=old.ts, reads=reading("zz")))
        # A snapshot at the floor is still validated, against the commits after it.
        with pytest.raises(OccConflictError, match="concurrent commit"):
            await committer.commit(request("e", snapshot_ts=mid.ts, reads=reading("c")))
        outcome = await committer.commit(request("f", snapshot_ts=mid.ts, reads=reading("b")))
        assert outcome.ts == 10 * 10**9 + 1


# -- idempotency ---------------------------------------------------------------------


async def test_idempotency_key_returns_first_outcome_from_memory(
    storage: CountingStorage,
) -> None:
    async with Committer(storage, clock_ns=step_clock) as committer:
        first = await committer.commit(request("a", idempotency_key="k", result_json='"one"'))
        again = await committer.commit(request("b", idempotency_key="k", result_json='"two"'))
        assert first == CommitOutcome(1, '"one"', deduplicated=False)
        assert again == CommitOutcome(1, '"one"', deduplicated=True)
        assert await committer.find_idempotent("k") == again
        assert await committer.find_idempotent("other") is None
    assert await stored(storage, "b") is None
    assert storage.batches == [1]


async def test_idempotency_key_survives_restart(new_storage: StorageFactory) -> None:
    storage = new_storage()
    await storage.open()
    async with Committer(storage) as committer:
        first = await committer.commit(request("a", idempotency_key="k", result_json="[1]"))
    await storage.close()

    storage = CountingStorage(new_storage())
    await storage.open()
    try:
        async with Committer(storage) as committer:
            again = await committer.commit(request("b", idempotency_key="k", result_json="[2]"))
        assert again == CommitOutcome(first.ts, "[1]", deduplicated=True)
        assert storage.batches == []
        assert await stored(storage, "b") is None
    finally:
        await storage.close()


async def test_a_fresh_key_is_not_looked_up_in_storage(storage: CountingStorage) -> None:
    async with Committer(storage) as committer:
        fresh = dataclasses.replace(request("a", idempotency_key="new"), fresh_key=True)
        await committer.commit(fresh)
        assert storage.key_lookups == []
        # A key its sender may have sent before (a retry) is looked up.
        await committer.commit(request("b", idempotency_key="retried"))
        assert storage.key_lookups == [["retried"]]


async def test_idempotency_key_evicted_from_memory_is_found_in_storage(
    storage: CountingStorage,
) -> None:
    config = CommitterConfig(recent_idempotency_keys=1)
    async with Committer(storage, config=config) as committer:
        first = await committer.commit(request("a", idempotency_key="k1", result_json="1"))
        await committer.commit(request("b", idempotency_key="k2", result_json="2"))
        again = await committer.commit(request("c", idempotency_key="k1", result_json="3"))
    assert again == CommitOutcome(first.ts, "1", deduplicated=True)
    assert await stored(storage, "c") is None


async def test_same_idempotency_key_twice_in_one_batch(storage: CountingStorage) -> None:
    async with Committer(storage, clock_ns=step_clock) as committer:
        first, second = await asyncio.gather(
            committer.commit(request("a", idempotency_key="k", result_json='"first"')),
            committer.commit(request("b", idempotency_key="k", result_json='"second"')),
        )
    assert first == CommitOutcome(1, '"first"', deduplicated=False)
    assert second == CommitOutcome(1, '"first"', deduplicated=True)
    assert await stored(storage, "b") is None


async def test_same_idempotency_key_in_consecutive_batches(storage: CountingStorage) -> None:
    # The second request is queued while the first is being written, so it misses
    # the check in commit() and meets the key again only inside the committer loop.
    async with Committer(storage, clock_ns=step_clock) as committer:
        first_task = asyncio.create_task(
            committer.commit(request("a", idempotency_key="k", result_json='"first"'))
        )
        while not storage.batches:
            await asyncio.sleep(0)
        bystander = asyncio.create_task(committer.commit(request("x")))
        second = await committer.commit(request("b", idempotency_key="k", result_json='"2"'))
        first = await first_task
        assert (await bystander).ts == 2
    assert first == CommitOutcome(1, '"first"', deduplicated=False)
    assert second == CommitOutcome(1, '"first"', deduplicated=True)
    assert await stored(storage, "b") is None
    assert await stored(storage, "x") is not None


# -- failed writes ----------------------------------------------------------------------


async def test_failed_batch_fails_every_caller_as_outcome_unknown(
    new_storage: StorageFactory,
) -> None:
    storage = FlakyStorage(new_storage())
    await storage.open()
    try:
        async with Committer(storage, clock_ns=step_clock) as committer:
            base = await committer.commit(request("a"))
            storage.failures = 1
            results = await asyncio.gather(
                *(committer.commit(request(f"lost{i}")) for i in range(3)),
                return_exceptions=True,
            )
            assert storage.batches[-1] == 3
            for result in results:
                # Retryable, and honest: the storage may have applied the batch.
                assert isinstance(result, UnavailableError)
                assert "outcome is unknown" in result.message
            # The ts handed to the failed batch are never handed out again, and its
            # writes stay in the window (a conflict is safer than a missed one).
            assert committer.last_ts == base.ts + 3
            with pytest.raises(OccConflictError):
                await committer.commit(request("b", snapshot_ts=base.ts, reads=reading("lost0")))
            outcome = await committer.commit(request("c", snapshot_ts=base.ts, reads=reading("a")))
            assert outcome.ts == base.ts + 4
        for i in range(3):
            assert await stored(storage, f"lost{i}") is None
    finally:
        await storage.close()


async def test_failed_batch_does_not_record_idempotency_keys(new_storage: StorageFactory) -> None:
    storage = FlakyStorage(new_storage())
    await storage.open()
    try:
        async with Committer(storage, clock_ns=step_clock) as committer:
            storage.failures = 1
            with pytest.raises(SynclineError):
                await committer.commit(request("a", idempotency_key="k", result_json='"x"'))
            assert await committer.find_idempotent("k") is None
            retried = await committer.commit(request("a", idempotency_key="k", result_json='"y"'))
            assert retried == CommitOutcome(2, '"y"', deduplicated=False)
    finally:
        await storage.close()


async def test_failed_batch_fails_duplicate_idempotent_callers_too(
    new_storage: StorageFactory,
) -> None:
    # A request deduplicated against an earlier one of the same batch must not be
    # told "committed" when that batch is then lost.
    storage = FlakyStorage(new_storage())
    await storage.open()
    try:
        async with Committer(storage, clock_ns=step_clock) as committer:
            storage.failures = 1
            results = await asyncio.gather(
                committer.commit(request("a", idempotency_key="k", result_json='"x"')),
                committer.commit(request("b", idempotency_key="k", result_json='"y"')),
                return_exceptions=True,
            )
            assert all(isinstance(r, SynclineError) for r in results), results
            assert await committer.find_idempotent("k") is None
    finally:
        await storage.close()


async def test_cancelled_caller_does_not_break_the_committer(storage: CountingStorage) -> None:
    async with Committer(storage, clock_ns=step_clock) as committer:
        await committer.commit(request("a"))
        async with committer.exclusive():  # the loop takes the batch, then waits here
            doomed = [
                asyncio.create_task(committer.commit(request("c", reads=reading("a")))),
                asyncio.create_task(committer.commit(request("d"))),
            ]
            await asyncio.sleep(0.01)
            for task in doomed:
                task.cancel()
            for task in doomed:
                with pytest.raises(asyncio.CancelledError):
                    await task
        # The conflicting request is dropped; the other was already taken for commit.
        outcome = await asyncio.wait_for(committer.commit(request("e")), 2.0)
        assert outcome.ts == 3
    assert await stored(storage, "c") is None
    assert await stored(storage, "d") is not None


async def test_commit_after_close_is_refused(storage: CountingStorage) -> None:
    committer = Committer(storage)
    with pytest.raises(SynclineError, match="not running"):
        await committer.commit(request("a"))
    await committer.start()
    await committer.close()
    await committer.close()  # idempotent
    with pytest.raises(SynclineError, match="not running"):
        await committer.commit(request("a"))
    assert storage.batches == []


class BlockingStorage(CountingStorage):
    """``write_batch`` waits for ``release`` before writing."""

    def __init__(self, inner: Storage) -> None:
        super().__init__(inner)
        self.release = asyncio.Event()

    async def write_batch(self, batch: Sequence[CommitEntry], *, epoch: int | None = None) -> None:
        self.batches.append(len(batch))
        await self.release.wait()
        await self.inner.write_batch(batch, epoch=epoch)


async def test_close_during_a_write_answers_the_callers_in_flight(
    new_storage: StorageFactory,
) -> None:
    storage = BlockingStorage(new_storage())
    await storage.open()
    try:
        committer = Committer(storage)
        await committer.start()
        caller = asyncio.create_task(committer.commit(request("a")))
        while not storage.batches:
            await asyncio.sleep(0)
        await committer.close(drain_timeout_seconds=0.2)
        with pytest.raises(SynclineError):
            await asyncio.wait_for(caller, 1.0)
    finally:
        storage.release.set()
        await storage.close()


async def test_a_deposed_leader_cannot_write_meta(new_storage: StorageFactory) -> None:
    storage = new_storage()
    await storage.open()
    try:
        mine = await storage.acquire_epoch()
        await storage.set_meta("k", "mine", epoch=mine)
        theirs = await storage.acquire_epoch()
        with pytest.raises(FencedError):
            await storage.set_meta("k", "late", epoch=mine)
        assert await storage.get_meta("k") == "mine"
        await storage.set_meta("k", "theirs", epoch=theirs)
        await storage.set_meta("k", "unfenced")  # embedded mode: no epoch, no check
        assert await storage.get_meta("k") == "unfenced"
    finally:
        await storage.close()


async def test_a_deposed_leader_cannot_commit(new_storage: StorageFactory) -> None:
    storage = new_storage()
    await storage.open()
    fenced: list[bool] = []
    try:
        old = Committer(
            storage, epoch=await storage.acquire_epoch(), on_fenced=lambda: fenced.append(True)
        )
        await old.start()
        first = await old.commit(request("before"))
        new = Committer(storage, epoch=await storage.acquire_epoch())
        await new.start()
        with pytest.raises(FencedError):
            await old.commit(request("late"))
        assert fenced == [True]
        with pytest.raises(FencedError):
            await old.commit(request("later"))
        after = await new.commit(request("after", snapshot_ts=first.ts))
        assert after.ts > first.ts
        async with storage.snapshot() as snapshot:
            assert [c.ts for c in await snapshot.commits_after(0, limit=10)] == [
                first.ts,
                after.ts,
            ]
        await old.close()
        await new.close()
    finally:
        await storage.close()
