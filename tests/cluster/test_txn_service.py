"""The txn service on real PostgreSQL and ZooKeeper: serializability, failover, fencing."""

from __future__ import annotations

import asyncio
import random
import signal
import time

import aiohttp
import pytest

from syncline import AppError
from syncline._errors import InvalidWriteSetError
from syncline.database import DataModel
from syncline.devservers import LocalPostgres, LocalZooKeeper
from syncline.runtime import ANONYMOUS
from syncline.storage import DocumentWrite, IndexKeyChange
from syncline.txn import CommitRequest, ReadSet
from tests.cluster.conftest import RunnerFactory, TxnCluster

pytestmark = pytest.mark.cluster


async def test_concurrent_increments_are_exact(make_runner: RunnerFactory) -> None:
    runners = [await make_runner() for _ in range(3)]
    await asyncio.gather(
        *(runners[i % 3].mutation("bank:increment", {"name": "c"}) for i in range(60))
    )
    assert await runners[0].query("bank:counter", {"name": "c"}) == 60.0


async def test_transfers_conserve_money_and_never_overdraw(make_runner: RunnerFactory) -> None:
    runner = await make_runner()
    names = [f"acct{i}" for i in range(5)]
    for name in names:
        await runner.mutation("bank:open_account", {"name": name, "balance": 100.0})
    rng = random.Random(7)
    refused = 0

    async def worker() -> None:
        nonlocal refused
        for _ in range(25):
            source, target = rng.sample(names, 2)
            try:
                await runner.mutation(
                    "bank:transfer",
                    {"source": source, "target": target, "amount": float(rng.randint(1, 60))},
                )
            except AppError as exc:
                assert exc.data == {"code": "INSUFFICIENT_FUNDS"}
                refused += 1
            balances = await runner.query("bank:balances")
            assert sum(balances.values()) == 500.0
            assert min(balances.values()) >= 0.0

    await asyncio.gather(*(worker() for _ in range(8)))
    balances = await runner.query("bank:balances")
    assert sum(balances.values()) == 500.0 and min(balances.values()) >= 0.0


async def test_malformed_commits_are_refused_and_write_nothing(make_runner: RunnerFactory) -> None:
    runner = await make_runner()
    await runner.mutation("bank:record", {"key": "ok"})
    model = runner.runner._deployments.current.model
    events = model.table("events")
    assert events is not None
    good_id = "not-an-id"
    cases = [
        (DocumentWrite(good_id, 999, {"_id": good_id}, ()), "unknown table number 999"),
        (
            DocumentWrite(good_id, events.meta.table_number, {"_id": good_id}, ()),
            "not an id of table 'events'",
        ),
    ]
    from syncline.values import new_id

    doc_id = new_id(events.meta.table_number)
    bad_doc = {"_id": doc_id, "_creationTime": 1.0, "key": 5.0}
    changes = tuple(IndexKeyChange(i.index_id, None, b"\x01") for i in events.indexes.values())
    cases.append(
        (
            DocumentWrite(doc_id, events.meta.table_number, bad_doc, changes),
            "events.key: expected string, got float64",
        )
    )
    good_doc = {"_id": doc_id, "_creationTime": 1.0, "key": "x"}
    cases.append(
        (
            DocumentWrite(doc_id, events.meta.table_number, good_doc, changes),
            "does not match the document",
        )
    )
    for write, fragment in cases:
        with pytest.raises(InvalidWriteSetError, match=fragment):
            await runner.committer.commit(
                CommitRequest(0, ReadSet(), [write], catalog_version=model.catalog_version)
            )
    assert await runner.query("bank:event_keys") == ["ok"]


async def test_concurrent_commits_share_calls_and_fail_alone(make_runner: RunnerFactory) -> None:
    runner = await make_runner()
    await runner.mutation("bank:record", {"key": "first"})  # the leader is known
    model = runner.runner._deployments.current.model

    def insert(key: str) -> CommitRequest:
        return _insert_event(model, key)

    bad = insert("bad")
    bad.writes[0].new["key"] = 5.0  # type: ignore[index]  # violates the schema
    requests = [insert(f"c{i}") for i in range(200)]
    requests.insert(100, bad)
    calls_before = runner.committer.calls
    results = await asyncio.gather(
        *(runner.committer.commit(request) for request in requests), return_exceptions=True
    )
    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(failed) == 1 and isinstance(failed[0], InvalidWriteSetError)
    assert "expected string, got float64" in failed[0].message
    committed = [r for r in results if not isinstance(r, BaseException)]
    assert len({outcome.ts for outcome in committed}) == 200
    # Queued while earlier calls were in flight, the commits went out together.
    assert runner.committer.calls - calls_before < 100
    keys = await runner.query("bank:event_keys")
    assert sorted(keys) == sorted(["first", *(f"c{i}" for i in range(200))])


def _insert_event(model: DataModel, key: str) -> CommitRequest:
    """A one-document insert into ``events``, shaped as a runner shapes it."""
    events = model.require_table("events")
    doc = model.new_document(events, {"key": key}, now_ms=None)
    changes = tuple(
        IndexKeyChange(index.index_id, old, new)
        for index, old, new in model.index_changes(events, None, doc)
    )
    write = DocumentWrite(doc["_id"], events.meta.table_number, doc, changes)
    return CommitRequest(0, ReadSet(), [write], catalog_version=model.catalog_version)


async def test_concurrent_large_commits_fit_the_calls(make_runner: RunnerFactory) -> None:
    runner = await make_runner()
    await runner.mutation("bank:record", {"key": "first"})
    model = runner.runner._deployments.current.model
    # 12 documents of ~0.9 MB: together far beyond gRPC's default 4 MiB message.
    requests = [_insert_event(model, f"{i:02d}" + "x" * 900_000) for i in range(12)]
    outcomes = await asyncio.gather(*(runner.committer.commit(r) for r in requests))
    assert len({outcome.ts for outcome in outcomes}) == 12
    assert not any(outcome.deduplicated for outcome in outcomes)


async def _load(
    runner_factory: RunnerFactory,
    stop: asyncio.Event,
    acked: list[str],
    timestamps: dict[int, list[int]],
    workers: int = 6,
) -> None:
    runners = [await runner_factory() for _ in range(2)]

    async def work(n: int) -> None:
        i = 0
        while not stop.is_set():
            key = f"w{n}-{i}"
            result = await runners[n % 2].runner.run_mutation(
                "bank:record", {"key": key}, ANONYMOUS
            )
            acked.append(key)
            timestamps.setdefault(n, []).append(result.ts)
            i += 1

    await asyncio.gather(*(work(n) for n in range(workers)))


async def _check_exactly_once(
    runner_factory: RunnerFactory, acked: list[str], timestamps: dict[int, list[int]]
) -> None:
    runner = await runner_factory()
    keys = await runner.query("bank:event_keys")
    assert len(keys) == len(set(keys)), "a commit was applied twice"
    assert set(acked) <= set(keys), "an acknowledged commit was lost"
    # Anything beyond the acknowledged ones was in flight when a fault hit.
    assert len(set(keys) - set(acked)) <= 6
    # Each caller saw strictly increasing commit ts, and no two commits share one.
    for worker_ts in timestamps.values():
        assert worker_ts == sorted(worker_ts) and len(set(worker_ts)) == len(worker_ts)
    every_ts = [ts for worker_ts in timestamps.values() for ts in worker_ts]
    assert len(set(every_ts)) == len(every_ts)


async def _run_fault(make_runner: RunnerFactory, fault: object, settle: float = 0.5) -> float:
    stop = asyncio.Event()
    acked: list[str] = []
    timestamps: dict[int, list[int]] = {}
    load = asyncio.ensure_future(_load(make_runner, stop, acked, timestamps))
    while len(acked) < 30:
        await asyncio.sleep(0.01)
    before = len(acked)
    started = time.monotonic()
    await fault()  # type: ignore[operator]
    while len(acked) <= before + 30:
        assert not load.done(), load.exception()
        await asyncio.sleep(0.01)
    recovered = time.monotonic() - started
    await asyncio.sleep(settle)
    stop.set()
    await load
    await _check_exactly_once(make_runner, acked, timestamps)
    return recovered


async def test_leader_sigkill_fails_over_with_nothing_lost_or_doubled(
    make_runner: RunnerFactory, txn_cluster: TxnCluster
) -> None:
    leader = await txn_cluster.leader()

    async def kill() -> None:
        leader.kill()

    recovered = await _run_fault(make_runner, kill)
    new_leader = await txn_cluster.leader(exclude=leader)
    assert new_leader is not leader
    print(f"failover after SIGKILL: commits resumed in {recovered:.2f} s")


async def test_stalled_leader_is_fenced_and_steps_down(
    make_runner: RunnerFactory, txn_cluster: TxnCluster
) -> None:
    leader = await txn_cluster.leader()

    async def stall() -> None:
        leader.signal(signal.SIGSTOP)

    recovered = await _run_fault(make_runner, stall)
    new_leader = await txn_cluster.leader(exclude=leader)
    # The old leader wakes up after its session expired: it must not commit again.
    leader.signal(signal.SIGCONT)
    deadline = time.monotonic() + 15
    while True:
        health = await leader.health()
        if health is not None and health.role != "leader":
            break
        assert time.monotonic() < deadline, "the stalled leader never stepped down"
        await asyncio.sleep(0.05)
    assert (await new_leader.health()).role == "leader"  # type: ignore[union-attr]
    print(f"failover after a stall: commits resumed in {recovered:.2f} s")


async def test_postgres_immediate_restart_mid_load(
    make_runner: RunnerFactory, txn_cluster: TxnCluster, postgres_server: LocalPostgres
) -> None:
    async def restart() -> None:
        await postgres_server.restart(mode="immediate")

    recovered = await _run_fault(make_runner, restart)
    await txn_cluster.leader()
    print(f"PostgreSQL immediate restart: commits resumed in {recovered:.2f} s")


async def test_zookeeper_outage_expires_the_leader_and_a_leader_returns(
    make_runner: RunnerFactory, txn_cluster: TxnCluster, zookeeper_server: LocalZooKeeper
) -> None:
    async def outage() -> None:
        await zookeeper_server.stop()
        await asyncio.sleep(2.5)  # longer than the session timeout: every session expires
        await zookeeper_server.start()

    recovered = await _run_fault(make_runner, outage)
    await txn_cluster.leader()
    print(f"ZooKeeper outage: commits resumed in {recovered:.2f} s after it began")


async def _get_when_up(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, object]]:
    """GET ``url``, waiting for the node's HTTP server to come up (it starts after gRPC)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            async with http.get(url) as response:
                return response.status, await response.json()
        except aiohttp.ClientConnectionError:
            assert time.monotonic() < deadline, f"{url} never answered"
            await asyncio.sleep(0.05)


async def test_health_and_readiness(txn_cluster: TxnCluster) -> None:
    leader = await txn_cluster.leader()
    standby = next(node for node in txn_cluster.nodes if node is not leader)
    async with aiohttp.ClientSession() as http:
        for node, ready in ((leader, 200), (standby, 503)):
            base = f"http://127.0.0.1:{node.http_port}"
            status, body = await _get_when_up(http, f"{base}/readyz")
            assert status == ready
            assert body["role"] == ("leader" if node is leader else "standby")
            status, _ = await _get_when_up(http, f"{base}/healthz")
            assert status == 200
    health = await leader.health()
    assert health is not None and health.epoch > 0 and health.role == "leader"
