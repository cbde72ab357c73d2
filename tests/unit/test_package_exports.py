"""Packages re-export a sorted ``__all__`` of names that exist."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize(
    "package",
    [
        "syncline.admin",
        "syncline.auth",
        "syncline.cluster",
        "syncline.functions",
        "syncline.jobs",
        "syncline.presence",
        "syncline.ratelimit",
        "syncline.runtime",
        "syncline.storage",
        "syncline.sync",
        "syncline.telemetry",
        "syncline.verify",
    ],
)
def test_all_is_sorted_and_complete(package: str) -> None:
    module = importlib.import_module(package)
    # ruff's order (RUF022): CONSTANTS, then Classes, then functions.
    assert module.__all__ == sorted(module.__all__, key=lambda n: (not n.isupper(), n))
    assert all(hasattr(module, name) for name in module.__all__)
