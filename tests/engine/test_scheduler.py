"""Scheduled functions and crons over real storage, with a clock the test moves.

Every test runs over SQLite and PostgreSQL. The scheduler is the one the
embedded server and the scheduler service run; "killing" it means cancelling
its tasks mid-job, which leaves storage exactly as a crashed process would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from syncline._errors import (
    FunctionNotFoundError,
    FunctionTypeError,
    SynclineError,
    ValidationError,
)
from syncline.app import AppLoadError, load_app
from syncline.runtime import ANONYMOUS
from syncline.scheduler import INTERRUPTED, JobScheduler, SchedulerConfig
from tests.engine.conftest import Engine, EngineFactory, eventually, module_globals, write_app

SCHEMA = """
from syncline import define_schema, define_table, v

schema = define_schema({
    "counters": define_table({"name": v.string(), "n": v.float64()}).index("by_name", ["name"]),
})
"""

JOBS = """
import asyncio
from syncline import AppError, action, internal, internal_action, internal_mutation, mutation, query, v

started = []       # actions that started, by name
release = None     # set by a test to an asyncio.Event an action waits for


async def _bump(ctx, name):
    row = await ctx.db.query("counters").with_index("by_name", lambda q: q.eq("name", name)).first()
    if row is None:
        await ctx.db.insert("counters", {"name": name, "n": 1.0})
    else:
        await ctx.db.patch(row["_id"], {"n": row["n"] + 1})


@internal_mutation(args={"name": v.string()})
async def bump(ctx, name):
    await _bump(ctx, name)
    return name


@internal_mutation(args={"name": v.string()})
async def bump_then_fail(ctx, name):
    await _bump(ctx, name)
    raise AppError(f"no {name} today")


@mutation(args={"delay": v.float64(), "name": v.string(), "fail": v.optional(v.boolean())})
async def schedule(ctx, delay, name, fail=False):
    job = await ctx.scheduler.run_after(delay, internal.jobs.bump, {"name": name})
    if fail:
        raise AppError("changed my mind")
    return job


@mutation(args={"count": v.float64(), "ref": v.string(), "args": v.any()})
async def schedule_many(ctx, count, ref, args):
    return [await ctx.scheduler.run_after(0, ref, args) for _ in range(int(count))]


@mutation(args={"when": v.any(), "name": v.string()})
async def schedule_at(ctx, when, name):
    return await ctx.scheduler.run_at(when, internal.jobs.bump, {"name": name})


@mutation(args={"when": v.any()})
async def schedule_at_datetime_naive(ctx, when):
    from datetime import datetime
    return await ctx.scheduler.run_at(datetime(2030, 1, 1), internal.jobs.bump, {"name": "x"})


@mutation(args={"id": v.string()})
async def cancel(ctx, id):
    await ctx.scheduler.cancel(id)


@mutation(args={"ref": v.string(), "args": v.any()})
async def schedule_ref(ctx, ref, args):
    return await ctx.scheduler.run_after(0, ref, args)


@internal_action(args={"name": v.string(), "wait": v.optional(v.boolean())})
async def act(ctx, name, wait=False):
    started.append(name)
    if wait:
        await release.wait()
        return await ctx.scheduler.run_after(0, internal.jobs.bump, {"name": name + "-after"})
    await ctx.run_mutation(internal.jobs.bump, {"name": name})
    return name


@internal_action(args={"name": v.string()})
async def act_fail(ctx, name):
    started.append(name)
    raise AppError(f"action {name} failed")


@action(args={"name": v.string()})
async def schedule_from_action(ctx, name):
    return await ctx.scheduler.run_after(0, internal.jobs.bump, {"name": name})


@query(args={"name": v.string()})
async def count(ctx, name):
    row = await ctx.db.query("counters").with_index("by_name", lambda q: q.eq("name", name)).first()
    return row["n"] if row else 0


@query(args={"id": v.string()})
async def job(ctx, id):
    return await ctx.db.system.get(id)


@query
async def jobs(ctx):
    return await ctx.db.system.query("_scheduled_functions").collect()


@query
async def crons(ctx):
    return await ctx.db.system.query("_cron_jobs").collect()
"""


class FakeClock:
    """Wall-clock milliseconds that move only when the test says."""

    def __init__(self) -> None:
        self.now_ms = time.time() * 1000.0

    def __call__(self) -> float:
        return self.now_ms

    def advance(self, seconds: float) -> None:
        self.now_ms += seconds * 1000.0


@dataclass
class Setup:
    engine: Engine
    clock: FakeClock
    app_dir: Path
    start_scheduler: Callable[..., Awaitable[JobScheduler]]

    @property
    def hooks(self) -> dict[str, Any]:
        return module_globals(self.engine.deployments.current.app, "jobs:act")

    async def count(self, name: str) -> float:
        return float(await self.engine.query("jobs:count", {"name": name}))

    async def job(self, job_id: str) -> dict[str, Any]:
        job = await self.engine.query("jobs:job", {"id": job_id})
        assert job is not None, f"job {job_id} is gone"
        return dict(job)

    async def state(self, job_id: str) -> str:
        return str((await self.job(job_id))["state"]["kind"])

    async def wait_state(self, job_id: str, kind: str, timeout_seconds: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_seconds
        while (state := await self.state(job_id)) != kind:
            assert time.monotonic() < deadline, f"job {job_id} is {state}, expected {kind}"
            await asyncio.sleep(0.01)


@pytest.fixture
async def setup(make_engine: EngineFactory, tmp_path: Path) -> AsyncIterator[Setup]:
    clock = FakeClock()
    engine = await make_engine(clock_ms=clock)
    app_dir = write_app(tmp_path / "app", {"schema.py": SCHEMA, "jobs.py": JOBS})
    await engine.deploy(app_dir)
    schedulers: list[JobScheduler] = []

    async def start_scheduler(**config: Any) -> JobScheduler:
        scheduler = JobScheduler(
            engine.storage,
            engine.runner,
            config=SchedulerConfig(**{"max_sleep_seconds": 0.05, **config}),
            clock_ms=clock,
        )
        engine.commit_listeners.append(scheduler.notify_commit)
        engine.deployments.on_change(scheduler.deployment_changed)
        await scheduler.start()
        schedulers.append(scheduler)
        return scheduler

    yield Setup(engine, clock, app_dir, start_scheduler)
    for scheduler in schedulers:
        await scheduler.close(drain_seconds=0.5)


async def test_a_scheduled_mutation_runs_once_and_its_job_records_success(setup: Setup) -> None:
    await setup.start_scheduler()
    result = await setup.engine.mutation("jobs:schedule", {"delay": 0.0, "name": "a"})
    job_id = result.value
    await setup.wait_state(job_id, "success")
    job = await setup.job(job_id)
    assert job["name"] == "jobs:bump"
    assert job["args"] == [{"name": "a"}]
    assert job["completedTime"] >= job["scheduledTime"]
    assert await setup.count("a") == 1


async def test_a_job_waits_for_its_time(setup: Setup) -> None:
    await setup.start_scheduler()
    job_id = (await setup.engine.mutation("jobs:schedule", {"delay": 60.0, "name": "later"})).value
    await asyncio.sleep(0.3)
    assert await setup.state(job_id) == "pending"
    setup.clock.advance(61)
    await setup.wait_state(job_id, "success")
    when = setup.clock() + 5000
    job_id = (await setup.engine.mutation("jobs:schedule_at", {"when": when, "name": "x"})).value
    assert (await setup.job(job_id))["scheduledTime"] == when


async def test_a_mutation_that_fails_schedules_nothing(setup: Setup) -> None:
    await setup.start_scheduler()
    with pytest.raises(SynclineError, match="changed my mind"):
        await setup.engine.mutation("jobs:schedule", {"delay": 0.0, "name": "a", "fail": True})
    assert await setup.engine.query("jobs:jobs") == []


@pytest.mark.parametrize(
    ("path", "args", "error", "message"),
    [
        (
            "jobs:schedule_ref",
            {"ref": "jobs:nope", "args": {}},
            FunctionNotFoundError,
            "no function 'jobs:nope'",
        ),
        (
            "jobs:schedule_ref",
            {"ref": "jobs:count", "args": {"name": "a"}},
            FunctionTypeError,
            "is a query",
        ),
        (
            "jobs:schedule_ref",
            {"ref": "jobs:bump", "args": {"name": 5}},
            ValidationError,
            "args.name",
        ),
        (
            "jobs:schedule_ref",
            {"ref": "jobs:bump", "args": [1]},
            ValidationError,
            "args: expected object",
        ),
        (
            "jobs:schedule",
            {"delay": -1.0, "name": "a"},
            ValidationError,
            "delay must be a number of seconds >= 0",
        ),
        (
            "jobs:schedule",
            {"delay": 1e12, "name": "a"},
            ValidationError,
            "beyond the scheduling horizon",
        ),
        (
            "jobs:schedule_at",
            {"when": 1_700_000_000, "name": "a"},
            ValidationError,
            "takes epoch milliseconds",
        ),
        (
            "jobs:schedule_at",
            {"when": "tomorrow", "name": "a"},
            ValidationError,
            "expected epoch milliseconds or a datetime",
        ),
        ("jobs:schedule_at_datetime_naive", {"when": None}, ValidationError, "has no timezone"),
        (
            "jobs:schedule_many",
            {"count": 1001.0, "ref": "jobs:bump", "args": {"name": "a"}},
            ValidationError,
            "at most 1000 jobs",
        ),
        ("jobs:cancel", {"id": "not-an-id"}, ValidationError, "is not a scheduled function id"),
    ],
)
async def test_bad_scheduling_is_refused_and_schedules_nothing(
    setup: Setup, path: str, args: dict[str, Any], error: type[SynclineError], message: str
) -> None:
    with pytest.raises(error, match=message):
        await setup.engine.mutation(path, args)
    assert await setup.engine.query("jobs:jobs") == []


async def test_a_failing_scheduled_mutation_is_rolled_back_and_recorded_failed(
    setup: Setup,
) -> None:
    await setup.start_scheduler()
    job_id = (
        await setup.engine.mutation(
            "jobs:schedule_ref", {"ref": "jobs:bump_then_fail", "args": {"name": "f"}}
        )
    ).value
    await setup.wait_state(job_id, "failed")
    assert (await setup.job(job_id))["state"]["error"] == "no f today"
    assert await setup.count("f") == 0


async def test_arguments_are_checked_again_against_the_code_live_when_the_job_runs(
    setup: Setup,
) -> None:
    job_id = (await setup.engine.mutation("jobs:schedule", {"delay": 0.0, "name": "a"})).value
    stricter = JOBS.replace(
        '@internal_mutation(args={"name": v.string()})\nasync def bump(',
        '@internal_mutation(args={"name": v.float64()})\nasync def bump(',
    )
    await setup.engine.deploy(write_app(setup.app_dir, {"jobs.py": stricter}))
    await setup.start_scheduler()
    await setup.wait_state(job_id, "failed")
    assert "args.name" in (await setup.job(job_id))["state"]["error"]


async def test_a_pending_job_canceled_never_runs(setup: Setup) -> None:
    await setup.start_scheduler()
    job_id = (await setup.engine.mutation("jobs:schedule", {"delay": 30.0, "name": "c"})).value
    await setup.engine.mutation("jobs:cancel", {"id": job_id})
    job = await setup.job(job_id)
    assert job["state"] == {"kind": "canceled"} and "completedTime" in job
    setup.clock.advance(31)
    await asyncio.sleep(0.3)
    assert await setup.state(job_id) == "canceled"
    assert await setup.count("c") == 0
    # Cancelling a finished job changes nothing.
    await setup.engine.mutation("jobs:cancel", {"id": job_id})
    assert await setup.state(job_id) == "canceled"


async def test_a_scheduled_action_runs_at_most_once_and_records_its_outcome(setup: Setup) -> None:
    await setup.start_scheduler()
    ok = (
        await setup.engine.mutation(
            "jobs:schedule_ref", {"ref": "jobs:act", "args": {"name": "ok"}}
        )
    ).value
    bad = (
        await setup.engine.mutation(
            "jobs:schedule_ref", {"ref": "jobs:act_fail", "args": {"name": "bad"}}
        )
    ).value
    await setup.wait_state(ok, "success")
    await setup.wait_state(bad, "failed")
    assert (await setup.job(bad))["state"]["error"] == "action bad failed"
    assert sorted(setup.hooks["started"]) == ["bad", "ok"]
    assert await setup.count("ok") == 1


async def test_an_action_interrupted_by_a_crash_ends_failed_and_is_not_run_again(
    setup: Setup,
) -> None:
    setup.hooks["release"] = asyncio.Event()  # never set: the action hangs until killed
    first = await setup.start_scheduler()
    job_id = (
        await setup.engine.mutation(
            "jobs:schedule_ref", {"ref": "jobs:act", "args": {"name": "k", "wait": True}}
        )
    ).value
    await setup.wait_state(job_id, "inProgress")
    await first.close(drain_seconds=0)  # the crash: the action's task dies mid-run
    assert await setup.state(job_id) == "inProgress"
    second = await setup.start_scheduler()
    await setup.wait_state(job_id, "failed")
    assert (await setup.job(job_id))["state"]["error"] == INTERRUPTED
    assert second.stats.interrupted_actions_failed == 1
    await asyncio.sleep(0.2)
    assert setup.hooks["started"] == ["k"]


async def test_cancel_during_an_action_lets_it_finish_but_cancels_what_it_schedules(
    setup: Setup,
) -> None:
    release = setup.hooks["release"] = asyncio.Event()
    await setup.start_scheduler()
    job_id = (
        await setup.engine.mutation(
            "jobs:schedule_ref", {"ref": "jobs:act", "args": {"name": "d", "wait": True}}
        )
    ).value
    await setup.wait_state(job_id, "inProgress")
    await setup.engine.mutation("jobs:cancel", {"id": job_id})
    release.set()
    await eventually(lambda: len(setup.hooks["started"]) == 1, what="action started")

    async def follow_up() -> dict[str, Any] | None:
        jobs = await setup.engine.query("jobs:jobs")
        return next((j for j in jobs if j["args"] == [{"name": "d-after"}]), None)

    deadline = time.monotonic() + 10
    while (after := await follow_up()) is None:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    assert after["state"]["kind"] == "canceled"
    await asyncio.sleep(0.2)
    assert await setup.state(job_id) == "canceled"
    assert await setup.count("d-after") == 0


async def test_an_action_schedules_in_a_transaction_of_its_own(setup: Setup) -> None:
    await setup.start_scheduler()
    action = await setup.engine.runner.run_action(
        "jobs:schedule_from_action", {"name": "fa"}, ANONYMOUS
    )
    await setup.wait_state(action.value, "success")
    assert await setup.count("fa") == 1


async def test_two_schedulers_at_once_still_run_each_mutation_exactly_once(setup: Setup) -> None:
    await setup.start_scheduler(max_concurrent_jobs=16)
    await setup.start_scheduler(max_concurrent_jobs=16)  # a stale second one
    names = [f"n{i}" for i in range(50)]
    for name in names:
        await setup.engine.mutation("jobs:schedule", {"delay": 0.0, "name": name})

    async def all_done() -> bool:
        jobs = await setup.engine.query("jobs:jobs")
        return all(j["state"]["kind"] == "success" for j in jobs)

    deadline = time.monotonic() + 30
    while not await all_done():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert [await setup.count(name) for name in names] == [1] * len(names)


async def test_finished_jobs_past_retention_are_deleted(setup: Setup) -> None:
    scheduler = await setup.start_scheduler(retention_seconds=3600)
    done = (await setup.engine.mutation("jobs:schedule", {"delay": 0.0, "name": "r"})).value
    await setup.wait_state(done, "success")
    waiting = (await setup.engine.mutation("jobs:schedule", {"delay": 86400.0, "name": "w"})).value
    assert await scheduler.sweep() == 0
    setup.clock.advance(3601)
    assert await scheduler.sweep() == 1
    assert await setup.engine.query("jobs:job", {"id": done}) is None
    assert await setup.state(waiting) == "pending"


def crons_source(*lines: str) -> str:
    body = "\n".join(lines)
    return f"from syncline import cron_jobs, internal\n\ncrons = cron_jobs()\n{body}\n"


async def cron_names(setup: Setup) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in await setup.engine.query("jobs:crons")}


async def test_an_interval_cron_fires_on_time_and_once_after_missed_ticks(setup: Setup) -> None:
    scheduler = await setup.start_scheduler()
    await setup.engine.deploy(
        write_app(
            setup.app_dir,
            {
                "crons.py": crons_source(
                    'crons.interval("tick", internal.jobs.bump, {"name": "tick"}, minutes=1)'
                )
            },
        )
    )
    deadline = time.monotonic() + 10
    while "tick" not in (crons := await cron_names(setup)):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    assert crons["tick"]["nextRunTime"] == pytest.approx(setup.clock() + 60_000, abs=1000)
    setup.clock.advance(55)
    await asyncio.sleep(0.3)
    assert await setup.count("tick") == 0
    setup.clock.advance(6)
    await eventually(lambda: scheduler.stats.executed == 1, timeout_seconds=10, what="first tick")
    assert await setup.count("tick") == 1
    # Ten minutes pass while nothing runs: one catch-up run, not ten.
    setup.clock.advance(600)
    await eventually(lambda: scheduler.stats.executed == 2, timeout_seconds=10, what="catch-up")
    await asyncio.sleep(0.3)
    assert await setup.count("tick") == 2
    assert (await cron_names(setup))["tick"]["nextRunTime"] > setup.clock()


async def test_a_deploy_replaces_the_crons_in_one_step(setup: Setup) -> None:
    await setup.start_scheduler()
    await setup.engine.deploy(
        write_app(
            setup.app_dir,
            {
                "crons.py": crons_source(
                    'crons.interval("a", internal.jobs.bump, {"name": "a"}, minutes=1)',
                    'crons.daily("b", internal.jobs.bump, {"name": "b"}, hour_utc=3, minute_utc=0)',
                )
            },
        )
    )
    await eventually_async(lambda: _names_are(setup, {"a", "b"}))
    await setup.engine.deploy(
        write_app(
            setup.app_dir,
            {
                "crons.py": crons_source(
                    'crons.interval("a", internal.jobs.bump, {"name": "a"}, minutes=2)',
                    'crons.cron("c", "*/5 * * * *", internal.jobs.act, {"name": "c"})',
                )
            },
        )
    )
    await eventually_async(lambda: _names_are(setup, {"a", "c"}))
    crons = await cron_names(setup)
    assert crons["a"]["schedule"] == {"interval": 120.0}
    assert crons["c"] == {
        **crons["c"],
        "function": "jobs:act",
        "args": [{"name": "c"}],
        "schedule": {"cron": "*/5 * * * *"},
    }


async def _names_are(setup: Setup, names: set[str]) -> bool:
    return set(await cron_names(setup)) == names


async def eventually_async(
    condition: Callable[[], Awaitable[bool]], timeout_seconds: float = 10
) -> None:
    deadline = time.monotonic() + timeout_seconds
    while not await condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            crons_source('crons.interval("x", internal.jobs.nope, minutes=1)'),
            "cron 'x': no function 'jobs:nope'",
        ),
        (
            crons_source('crons.interval("x", internal.jobs.count, {"name": "a"}, minutes=1)'),
            "is a query",
        ),
        (
            crons_source('crons.interval("x", internal.jobs.bump, {"name": 1}, minutes=1)'),
            "args.name",
        ),
        ("crons = 5\n", r"must define `crons = cron_jobs\(\)`"),
    ],
)
def test_a_bad_crons_file_fails_the_load_naming_the_cron(
    tmp_path: Path, source: str, message: str
) -> None:
    files = {"schema.py": SCHEMA, "jobs.py": JOBS, "crons.py": source}
    with pytest.raises(AppLoadError, match=message):
        load_app(write_app(tmp_path / "app", files))


async def test_clock_jumps_neither_skip_nor_repeat_jobs_and_crons(setup: Setup) -> None:
    scheduler = await setup.start_scheduler()
    await setup.engine.deploy(
        write_app(
            setup.app_dir,
            {
                "crons.py": crons_source(
                    'crons.interval("tick", internal.jobs.bump, {"name": "tick"}, minutes=10)'
                )
            },
        )
    )
    await eventually_async(lambda: _names_are(setup, {"tick"}))
    later = (await setup.engine.mutation("jobs:schedule", {"delay": 3600.0, "name": "later"})).value
    # Forward two hours: the job runs at once, the cron once (not twelve times).
    setup.clock.advance(7200)
    await setup.wait_state(later, "success")
    await eventually(lambda: scheduler.stats.crons_fired == 1, timeout_seconds=10, what="cron")
    await asyncio.sleep(0.3)
    assert await setup.count("tick") == 1 and scheduler.stats.crons_fired == 1
    # Back three hours: the cron would wait three hours more; it is moved back to
    # one interval from the new now, and nothing runs twice.
    setup.clock.advance(-3 * 3600)
    await eventually_async(lambda: _next_run_within(setup, 600), timeout_seconds=10)
    await asyncio.sleep(0.3)
    assert await setup.count("later") == 1 and await setup.count("tick") == 1
    setup.clock.advance(601)
    await eventually(lambda: scheduler.stats.crons_fired == 2, timeout_seconds=10, what="cron")


async def _next_run_within(setup: Setup, seconds: float) -> bool:
    cron = (await cron_names(setup))["tick"]
    return bool(cron["nextRunTime"] <= setup.clock() + seconds * 1000)


async def test_only_commits_that_write_jobs_wake_the_scheduler_to_scan(setup: Setup) -> None:
    # No periodic look: a job runs only because its commit was noticed.
    scheduler = await setup.start_scheduler(max_sleep_seconds=3600)
    await eventually(lambda: scheduler.stats.scans >= 1, what="the first scan")
    await asyncio.sleep(0.1)
    scans = scheduler.stats.scans
    for _ in range(20):
        await setup.engine.mutation(
            "jobs:schedule_ref", {"ref": "jobs:bump", "args": {"name": "x"}}
        )
    job_id = (await setup.engine.mutation("jobs:schedule", {"delay": 0.0, "name": "woken"})).value
    await setup.wait_state(job_id, "success")
    await eventually(lambda: scheduler.stats.executed == 21, what="every job")
    await asyncio.sleep(0.3)
    busy = scheduler.stats.scans
    assert busy > scans
    # Commits that write no job or cron cause no scan.
    for _ in range(20):
        await setup.engine.runner.run_mutation(
            "jobs:bump", {"name": "plain"}, ANONYMOUS, from_function=True
        )
    await asyncio.sleep(0.3)
    assert scheduler.stats.scans == busy
