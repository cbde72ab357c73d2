"""Shared test configuration: markers, and reports that keep server logs."""

from __future__ import annotations

from collections.abc import Generator

import pytest

pytest_plugins = ["tests.fixtures.servers", "tests.fixtures.infra"]


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
