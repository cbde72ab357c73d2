"""The engine composed as the embedded server composes it, minus HTTP.

Storage, committer, deployment manager and runner over real storage: every test
that builds storage through ``new_storage`` (``make_engine`` does) runs twice,
over a SQLite file in ``tmp_path`` and over a fresh PostgreSQL database. Apps
are written as source files and loaded with ``load_app``.
"""

from __future__ import annotations

import asyncio
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from syncline.app import App, load_app
from syncline.runtime import (
    ANONYMOUS,
    Deployment,
    DeploymentManager,
    FunctionRunner,
    MutationResult,
    QueryResult,
    RunnerConfig,
)
from syncline.storage import PostgresStorage, SqliteStorage, Storage
from syncline.txn import Committer, CommitterConfig


def write_app(directory: Path, files: Mapping[str, str]) -> Path:
    """Write an app's modules (``{"schema.py": source, ...}``) and return its directory."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return directory


def module_globals(app: App, path: str) -> dict[str, Any]:
    """The globals of the module that defines ``path``: where test hooks and counters live."""
    return app.functions[path].handler.__globals__


async def eventually(
    condition: Callable[[], bool], *, timeout_seconds: float = 2.0, what: str = "condition"
) -> None:
    """Poll ``condition`` until it holds; fail with ``what`` after the deadline."""
    deadline = time.monotonic() + timeout_seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


StorageFactory = Callable[[], Storage]


@pytest.fixture(params=["sqlite", "postgres"])
def storage_backend(request: pytest.FixtureRequest) -> str:
    """The backend this test runs over."""
    return str(request.param)


@pytest.fixture
def new_storage(
    request: pytest.FixtureRequest, storage_backend: str, tmp_path: Path
) -> StorageFactory:
    """Makes storages (not yet open) over this test's one database: a storage
    made later sees what an earlier one wrote, as after a restart."""
    if storage_backend == "sqlite":
        path = tmp_path / "data" / "syncline.sqlite3"
        return lambda: SqliteStorage(path)
    # Requested only here, so SQLite runs do not start PostgreSQL.
    dsn: str = request.getfixturevalue("pg_dsn")
    return lambda: PostgresStorage(dsn, pool_min=1)


@dataclass
class Engine:
    storage: Storage
    committer: Committer
    deployments: DeploymentManager
    runner: FunctionRunner
    commit_listeners: list[Callable[[int], None]] = field(default_factory=list)

    async def deploy(self, directory: Path) -> Deployment:
        return await self.deployments.apply(load_app(directory))

    async def mutation(
        self, path: str, args: dict[str, Any] | None = None, **kwargs: Any
    ) -> MutationResult:
        return await self.runner.run_mutation(path, args or {}, ANONYMOUS, **kwargs)

    async def query(self, path: str, args: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        result = await self.run_query(path, args, **kwargs)
        return result.value

    async def run_query(
        self, path: str, args: dict[str, Any] | None = None, **kwargs: Any
    ) -> QueryResult:
        return await self.runner.run_query(path, args or {}, ANONYMOUS, **kwargs)


EngineFactory = Callable[..., Awaitable[Engine]]


@pytest.fixture
async def make_engine(new_storage: StorageFactory) -> AsyncIterator[EngineFactory]:
    """Build engines over the test's database; all are closed at the end of the test."""
    opened: list[Engine] = []

    async def make(
        *,
        runner_config: RunnerConfig | None = None,
        committer_config: CommitterConfig | None = None,
        clock_ms: Callable[[], float] | None = None,
    ) -> Engine:
        storage = new_storage()
        await storage.open()
        listeners: list[Callable[[int], None]] = []

        def on_commit(ts: int) -> None:
            for listener in listeners:
                listener(ts)

        committer = Committer(storage, config=committer_config, on_commit=on_commit)
        await committer.start()
        deployments = DeploymentManager(storage, committer)
        runner = FunctionRunner(
            storage,
            committer,
            deployments,
            config=runner_config,
            **({"clock_ms": clock_ms} if clock_ms is not None else {}),
        )
        engine = Engine(storage, committer, deployments, runner, listeners)
        opened.append(engine)
        return engine

    yield make
    for engine in reversed(opened):
        await engine.committer.close()
        await engine.storage.close()
