"""Shared test configuration: markers, and reports that keep server logs."""

from __future__ import annotations

import os
from collections.abc import Generator

# Tests fork servers (PostgreSQL, ZooKeeper, syncline) while gRPC channels are busy
# on other threads; gRPC's fork handlers then crash the child before it execs.
# Children here always exec at once, so the handlers are not needed.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import pytest

pytest_plugins = [
    "tests.fixtures.servers",
    "tests.fixtures.infra",
    "tests.fixtures.local_cluster",
]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e: drives a real `syncline dev` process with real clients"
    )
    config.addinivalue_line(
        "markers", "cluster: runs cluster services on real PostgreSQL and ZooKeeper"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    # Fixtures read this to dump server logs when the test body failed.
    setattr(item, f"rep_{report.when}", report)
    return report
