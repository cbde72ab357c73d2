"""Running the workloads: client processes that call the verification app through
the sync protocol (``syncline.Client``) and record what they did and saw.

Each process has its own connection, to one of the given URLs in turn (several
regions at once). A mutation that failed is recorded ``fail`` (a failed mutation
never commits); one whose answer did not come in time is ``info`` (it may have
committed). Reads are queries: one snapshot each.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from typing import Any

from syncline.client import Client, ClientError, FunctionError
from syncline.verify._faults import longest_gap_ns
from syncline.verify._functions import effects_key
from syncline.verify._history import History, OpType
from syncline.verify._list_append import Anomaly

TXN = "_system/verify:txn"
READ = "_system/verify:read"
OPEN_ACCOUNTS = "_system/verify:open_accounts"
TRANSFER = "_system/verify:transfer"
BALANCES = "_system/verify:balances"

Progress = Callable[[str], None]
CONVERGENCE_SECONDS = 30.0
"""How long subscribers have, after the last write, to show the final state."""


@dataclass(frozen=True)
class WorkloadConfig:
    urls: tuple[str, ...]
    """Where clients connect, in turn (one per region checks across regions)."""
    admin_key: str
    seconds: float = 10.0
    """How long operations are issued."""
    clients: int = 6
    """Concurrent client processes (>= 1)."""
    seed: int = 0
    request_timeout_seconds: float = 10.0
    """A call unanswered this long is recorded as unknown (info)."""
    keys_active: int = 6
    """List-append keys written at any time; a key retires after ``appends_per_key``."""
    appends_per_key: int = 24
    max_ops: int = 4
    scheduled_jobs: int = 1500
    """About how many jobs the scheduled-effects workload schedules, paced over its
    duration: clients must not outrun the scheduler by more than it can catch up."""
    read_only_fraction: float = 0.25
    accounts: int = 5
    initial_balance: int = 100


@dataclass
class Timeline:
    """When operations completed ok: the longest stretch without one is the
    longest unavailability the clients saw."""

    started_ns: int = field(default_factory=time.monotonic_ns)
    """``time.monotonic_ns()`` when the workload began."""
    ok_ns: list[int] = field(default_factory=list)
    """Since it began."""
    ended_ns: int | None = None
    """When its clients stopped, since it began."""
    not_ok: Counter[str] = field(default_factory=Counter)
    """Why operations failed or went unanswered: each error's code, by count."""

    def begin(self) -> None:
        """Start counting now (the workload's clients are about to start)."""
        self.started_ns = time.monotonic_ns()
        self.ok_ns.clear()
        self.ended_ns = None
        self.not_ok.clear()

    def now(self) -> int:
        return time.monotonic_ns() - self.started_ns

    def last_ok_ns(self) -> int | None:
        """The latest success on ``time.monotonic_ns()``'s clock, if any."""
        return self.started_ns + self.ok_ns[-1] if self.ok_ns else None

    def end(self) -> None:
        self.ended_ns = self.now()

    def absolute_marks(self) -> list[int]:
        """The successes on ``time.monotonic_ns()``'s clock."""
        return [self.started_ns + mark for mark in self.ok_ns]

    def longest_gap_seconds(self) -> float:
        ended = self.ended_ns if self.ended_ns is not None else self.now()
        return longest_gap_ns(self.ok_ns, 0, ended) / 1e9


_OUTCOME_UNKNOWN = ("Unavailable:", "Fenced:", "Server Error")
"""How the failures begin that do not say whether a mutation committed: a service or
its storage failed while it was under way, or the server failed in a way it does
not explain to clients."""


def outcome_unknown(error: FunctionError) -> bool:
    """Whether a failed call may still have committed (recorded ``info``, not ``fail``).

    The server refusing a mutation (a conflict, a bad argument, the function's own
    error) means it did not commit; an unavailable txn leader or storage does not.
    """
    return error.data is None and str(error.message).startswith(_OUTCOME_UNKNOWN)


async def _call(
    history: History,
    timeline: Timeline,
    process: int,
    f: str,
    invoked: Any,
    call: Awaitable[Any],
    complete: Callable[[Any], Any],
    *,
    answer_within_seconds: float,
) -> None:
    history.add(process, OpType.INVOKE, f, invoked, timeline.now())
    try:
        result = await asyncio.wait_for(call, answer_within_seconds)
    except FunctionError as exc:
        outcome = OpType.INFO if outcome_unknown(exc) else OpType.FAIL
        history.add(process, outcome, f, invoked, timeline.now())
        timeline.not_ok[str(exc.message).split(":", 1)[0]] += 1
    except TimeoutError:
        history.add(process, OpType.INFO, f, invoked, timeline.now())
        timeline.not_ok[f"no answer within {answer_within_seconds:g} s"] += 1
    except (ClientError, OSError) as exc:
        history.add(process, OpType.INFO, f, invoked, timeline.now())
        timeline.not_ok[type(exc).__name__] += 1
    else:
        done = timeline.now()
        history.add(process, OpType.OK, f, complete(result), done)
        timeline.ok_ns.append(done)


class _Keys:
    """The list-append key pool: unique values per key, and keys retired once long."""

    def __init__(self, config: WorkloadConfig) -> None:
        self._config = config
        self._next_key = itertools.count()
        self._values = itertools.count(1)
        self._appends: dict[str, int] = {}
        self.active = [self._new_key() for _ in range(config.keys_active)]

    def _new_key(self) -> str:
        key = f"k{next(self._next_key)}"
        self._appends[key] = 0
        return key

    @property
    def used(self) -> list[str]:
        return list(self._appends)

    def append(self, rng: random.Random) -> tuple[str, int]:
        slot = rng.randrange(len(self.active))
        key = self.active[slot]
        self._appends[key] += 1
        if self._appends[key] >= self._config.appends_per_key:
            self.active[slot] = self._new_key()
        return key, next(self._values)


def _list_append_ops(keys: _Keys, rng: random.Random, config: WorkloadConfig) -> list[list[Any]]:
    ops: list[list[Any]] = []
    for _ in range(rng.randint(1, config.max_ops)):
        if rng.random() < 0.5:
            key, value = keys.append(rng)
            ops.append(["append", key, value])
        else:
            ops.append(["r", rng.choice(keys.active), None])
    return ops


async def run_list_append(
    config: WorkloadConfig, run: str, progress: Progress, timeline: Timeline | None = None
) -> tuple[History, dict[str, list[Any]], Timeline]:
    """Run the list-append workload: its history, each key's final list (read by a
    committing transaction after everything else, so it is current), and the
    longest unavailability in seconds."""
    history = History()
    timeline = timeline or Timeline()
    timeline.begin()
    keys = _Keys(config)
    deadline = time.monotonic() + config.seconds

    async def process(number: int, client: Client) -> None:
        rng = random.Random(f"{config.seed}-list-append-{number}")
        while time.monotonic() < deadline:
            ops = _list_append_ops(keys, rng, config)
            if all(op[0] == "r" for op in ops) or rng.random() < config.read_only_fraction:
                read_keys = sorted({op[1] for op in ops})
                invoked = [["r", k, None] for k in read_keys]
                call = client.query(READ, {"run": run, "keys": read_keys})
            else:
                invoked = ops
                call = client.mutation(TXN, {"run": run, "ops": ops})
            await _call(
                history,
                timeline,
                number,
                "txn",
                invoked,
                call,
                list,
                answer_within_seconds=config.request_timeout_seconds,
            )

    await _with_clients(config, "list-append", process, progress, history)
    timeline.end()
    final = await _final_lists(config, run, keys.used)
    return history, final, timeline


async def _final_lists(config: WorkloadConfig, run: str, keys: list[str]) -> dict[str, list[Any]]:
    """Every key's list, read in a transaction that commits (it appends to a key of
    its own): the txn leader validates its reads, so they are the latest."""
    final: dict[str, list[Any]] = {}
    async with Client(config.urls[0], admin_key=config.admin_key) as client:
        for start in range(0, len(keys), 60):
            chunk = keys[start : start + 60]
            ops: list[list[Any]] = [["r", k, None] for k in chunk]
            ops.append(["append", f"final-{uuid.uuid4().hex}", 0])
            done = await asyncio.wait_for(
                client.mutation(TXN, {"run": run, "ops": ops}), config.request_timeout_seconds * 3
            )
            final.update({op[1]: list(op[2]) for op in done if op[0] == "r"})
    return final


async def run_bank(
    config: WorkloadConfig, run: str, progress: Progress, timeline: Timeline | None = None
) -> tuple[History, dict[str, int], int, Timeline]:
    """Run the bank workload: its history, the final balances, the total that must
    hold, and the longest unavailability in seconds."""
    accounts = [f"a{i}" for i in range(config.accounts)]
    total = config.accounts * config.initial_balance
    async with Client(config.urls[0], admin_key=config.admin_key) as client:
        await client.mutation(
            OPEN_ACCOUNTS,
            {"run": run, "balances": [[a, config.initial_balance] for a in accounts]},
        )
    history = History()
    timeline = timeline or Timeline()
    timeline.begin()
    deadline = time.monotonic() + config.seconds

    async def process(number: int, client: Client) -> None:
        rng = random.Random(f"{config.seed}-bank-{number}")
        while time.monotonic() < deadline:
            if rng.random() < 0.3:
                call = client.query(BALANCES, {"run": run})
                await _call(
                    history,
                    timeline,
                    number,
                    "read",
                    None,
                    call,
                    list,
                    answer_within_seconds=config.request_timeout_seconds,
                )
                continue
            source, target = rng.sample(accounts, 2)
            amount = rng.randint(1, config.initial_balance // 4)
            args = {"run": run, "source": source, "target": target, "amount": amount}
            await _call(
                history,
                timeline,
                number,
                "transfer",
                [source, target, amount],
                client.mutation(TRANSFER, args),
                _with_outcome([source, target, amount]),
                answer_within_seconds=config.request_timeout_seconds,
            )

    await _with_clients(config, "bank", process, progress, history)
    timeline.end()
    async with Client(config.urls[0], admin_key=config.admin_key) as client:
        final = {str(k): int(b) for k, b in await client.query(BALANCES, {"run": run})}
    return history, final, total, timeline


class SubscriptionTracker:
    """What each subscriber last showed, checked as results arrive: a key's list may
    only grow from what the subscriber showed before (never an older or a
    different history)."""

    def __init__(self, subscribers: int, keys: list[str]) -> None:
        self.keys = keys
        self.latest: list[dict[str, list[Any]]] = [{} for _ in range(subscribers)]
        self.anomalies: list[Anomaly] = []
        self.updates = 0

    def observe(self, subscriber: int, result: list[list[Any]]) -> None:
        """A result of ``_system/verify:read`` reached ``subscriber``."""
        self.updates += 1
        seen = {op[1]: list(op[2]) for op in result}
        for key, now in seen.items():
            before = self.latest[subscriber].get(key, [])
            if now[: len(before)] != before:
                self.anomalies.append(
                    Anomaly(
                        "subscription-went-back",
                        f"subscriber {subscriber} saw key {key!r} go from {before!r} to "
                        f"{now!r}: a result older than, or different from, one it had",
                    )
                )
        self.latest[subscriber] = seen

    def behind(self, final: dict[str, list[Any]]) -> list[int]:
        """The subscribers not showing ``final``."""
        wanted = {k: final.get(k, []) for k in self.keys}
        return [
            n
            for n, seen in enumerate(self.latest)
            if {k: seen.get(k, []) for k in self.keys} != wanted
        ]


@dataclass
class SubscriptionRun:
    """What the subscription workload saw."""

    history: History
    """The writers' appends (a list-append history)."""
    final: dict[str, list[Any]]
    anomalies: list[Anomaly]
    subscribers: int
    updates: int
    """Results the subscribers received."""
    convergence_seconds: float | None
    """From the last write's answer to every subscriber showing the final lists
    (None: some never did)."""
    timeline: Timeline


async def run_subscriptions(
    config: WorkloadConfig, run: str, progress: Progress, timeline: Timeline | None = None
) -> SubscriptionRun:
    """Writers append to a few keys while subscribers in every region watch them all.
    Each subscriber's lists may only grow (a result never goes back to an older
    version, nor shows a different history), and once writing stops every
    subscriber must come to show exactly the final lists."""
    keys = [f"s{i}" for i in range(4)]
    history = History()
    timeline = timeline or Timeline()
    timeline.begin()
    values = itertools.count(1)
    deadline = time.monotonic() + config.seconds
    watchers = [Client(url, admin_key=config.admin_key) for url in config.urls for _ in range(2)]
    tracker = SubscriptionTracker(len(watchers), keys)
    changed = asyncio.Event()

    async def watch(number: int, client: Client) -> None:
        async for result in client.subscribe(READ, {"run": run, "keys": keys}):
            tracker.observe(number, result)
            changed.set()

    async def write(number: int, client: Client) -> None:
        rng = random.Random(f"{config.seed}-subscriptions-{number}")
        while time.monotonic() < deadline:
            ops = [["append", rng.choice(keys), next(values)]]
            await _call(
                history,
                timeline,
                number,
                "txn",
                ops,
                client.mutation(TXN, {"run": run, "ops": ops}),
                list,
                answer_within_seconds=config.request_timeout_seconds,
            )

    watch_tasks = []
    try:
        for number, client in enumerate(watchers):
            await client.connect()
            watch_tasks.append(
                asyncio.create_task(watch(number, client), name=f"verify-watch-{number}")
            )
        await _with_clients(
            replace(config, clients=max(1, config.clients // 2)),
            "subscriptions",
            write,
            progress,
            history,
        )
        writes_done = time.monotonic()
        timeline.end()
        final = await _final_lists(config, run, keys)
        converged_at: float | None = None
        convergence_deadline = writes_done + CONVERGENCE_SECONDS
        while time.monotonic() < convergence_deadline:
            if not tracker.behind(final):
                converged_at = time.monotonic()
                break
            changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), 0.1)
        if converged_at is None:
            tracker.anomalies.append(
                Anomaly(
                    "not-converged",
                    f"subscribers {tracker.behind(final)} did not show the final lists "
                    f"within {CONVERGENCE_SECONDS:g} s of the last write",
                )
            )
    finally:
        for task in watch_tasks:
            task.cancel()
        for client in watchers:
            await client.close()
    return SubscriptionRun(
        history,
        final,
        tracker.anomalies,
        len(watchers),
        tracker.updates,
        None if converged_at is None else max(0.0, converged_at - writes_done),
        timeline,
    )


SCHEDULE = "_system/verify:schedule"
JOB_STATES = "_system/verify:job_states"
JOBS_STALL_SECONDS = 30.0
"""Scheduled jobs still unfinished after this long without one finishing are
reported (however long they take, as long as they keep finishing)."""
UNFINISHED = ("pending", "inProgress")
BATCH = 3
"""Jobs one scheduling mutation schedules."""


@dataclass
class LedgerRun:
    """What the scheduled-effect workload scheduled and what took effect."""

    history: History
    jobs: dict[str, tuple[str, str | None, OpType]]
    """Token -> (kind, job id, how scheduling it ended)."""
    states: dict[str, str | None]
    """Job id -> its final state."""
    effects: list[Any]
    timeline: Timeline


async def run_ledger(
    config: WorkloadConfig, run: str, progress: Progress, timeline: Timeline | None = None
) -> LedgerRun:
    """Clients schedule mutations and actions whose one effect appends a token to a
    list; once every job has finished, each token's effect must be there once for
    a mutation that succeeded, at most once for any action, never for a job that
    was not scheduled."""
    history = History()
    timeline = timeline or Timeline()
    timeline.begin()
    jobs: dict[str, tuple[str, str | None, OpType]] = {}
    tokens = itertools.count()
    deadline = time.monotonic() + config.seconds

    async def process(number: int, client: Client) -> None:
        rng = random.Random(f"{config.seed}-ledger-{number}")
        calls = max(1, config.scheduled_jobs // BATCH)
        pace = config.seconds * config.clients / calls
        while time.monotonic() < deadline:
            next_call = time.monotonic() + pace * rng.uniform(0.5, 1.5)
            kind = rng.choice(("mutation", "action"))
            batch = [f"t{next(tokens)}" for _ in range(BATCH)]
            args = {"run": run, "tokens": batch, "kind": kind, "delay_ms": rng.uniform(0, 300)}
            await _call(
                history,
                timeline,
                number,
                "schedule",
                [kind, batch],
                client.mutation(SCHEDULE, args),
                _with_outcome([kind, batch]),
                answer_within_seconds=config.request_timeout_seconds,
            )
            outcome = history.ops[-1]
            ids = outcome.value[2] if outcome.type is OpType.OK else [None] * len(batch)
            for token, job_id in zip(batch, ids, strict=True):
                jobs[token] = (kind, job_id, outcome.type)
            await asyncio.sleep(max(0.0, min(next_call, deadline) - time.monotonic()))

    await _with_clients(config, "scheduled effects", process, progress, history)
    timeline.end()
    states = await _settled_states(config, [j for _, j, _ in jobs.values() if j is not None])
    shards = sorted({effects_key(token) for token in jobs})
    final = await _final_lists(config, run, shards)
    effects = [token for shard in shards for token in final.get(shard, [])]
    return LedgerRun(history, jobs, states, effects, timeline)


async def _settled_states(config: WorkloadConfig, ids: list[str]) -> dict[str, str | None]:
    """Each job's state once none is pending or running, or once none has finished
    for ``JOBS_STALL_SECONDS``."""
    states: dict[str, str | None] = {}
    unfinished = len(ids)
    stalled_since = time.monotonic()
    async with Client(config.urls[0], admin_key=config.admin_key) as client:
        while True:
            for start in range(0, len(ids), 200):
                chunk = ids[start : start + 200]
                found = await client.query(JOB_STATES, {"ids": chunk})
                states.update(zip(chunk, found, strict=True))
            remaining = sum(1 for s in states.values() if s in UNFINISHED)
            if remaining < unfinished:
                unfinished, stalled_since = remaining, time.monotonic()
            if not remaining or time.monotonic() - stalled_since > JOBS_STALL_SECONDS:
                return states
            await asyncio.sleep(0.25)


def _with_outcome(invoked: list[Any]) -> Callable[[Any], list[Any]]:
    return lambda outcome: [*invoked, outcome]


async def _with_clients(
    config: WorkloadConfig,
    name: str,
    process: Callable[[int, Client], Coroutine[Any, Any, None]],
    progress: Progress,
    history: History,
) -> None:
    clients = [
        Client(config.urls[n % len(config.urls)], admin_key=config.admin_key)
        for n in range(config.clients)
    ]
    try:
        for client in clients:
            await client.connect()

        async def report() -> None:
            while True:
                await asyncio.sleep(2.0)
                progress(f"{name}: {len(history.ops) // 2} operations so far")

        reporter = asyncio.create_task(report(), name=f"verify-{name}-progress")
        try:
            async with asyncio.TaskGroup() as group:
                for number, client in enumerate(clients):
                    group.create_task(process(number, client), name=f"verify-{name}-{number}")
        finally:
            reporter.cancel()
    finally:
        for client in clients:
            await client.close()
