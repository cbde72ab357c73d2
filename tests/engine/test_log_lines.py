"""What functions log: captured per call with Convex's level prefixes, and kept
from non-admin callers where the runner is told to (production clusters)."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncline.functions import install_print_capture
from syncline.runtime import ANONYMOUS, Identity, RunnerConfig
from tests.engine.conftest import EngineFactory, write_app

APP = """
import logging
from syncline import action, mutation, query

log = logging.getLogger(__name__)


@query
async def chatty(ctx):
    print("printed")
    log.debug("debugged")
    log.info("informed %s", "you")
    log.warning("warned")
    log.error("failed")
    return 1.0


@mutation
async def chatty_mutation(ctx):
    print("from a mutation")


@action
async def chatty_action(ctx):
    print("from an action")
    return await ctx.run_query("logs:chatty")
"""

ADMIN = Identity(admin=True)


@pytest.fixture
def app(tmp_path: Path) -> Path:
    install_print_capture()  # as every server does when it starts
    return write_app(tmp_path / "app", {"logs.py": APP})


async def test_print_and_app_logging_become_levelled_lines(
    make_engine: EngineFactory, app: Path
) -> None:
    engine = await make_engine()
    await engine.deploy(app)
    result = await engine.run_query("logs:chatty")
    assert result.log_lines == [
        "[LOG] printed",
        "[DEBUG] debugged",
        "[INFO] informed you",
        "[WARN] warned",
        "[ERROR] failed",
    ]
    # An action's lines include those of the functions it ran.
    action = await engine.runner.run_action("logs:chatty_action", {}, ANONYMOUS)
    assert action.log_lines[0] == "[LOG] from an action"
    assert "[WARN] warned" in action.log_lines


async def test_without_client_log_lines_only_admins_get_them(
    make_engine: EngineFactory, app: Path
) -> None:
    engine = await make_engine(runner_config=RunnerConfig(client_log_lines=False))
    await engine.deploy(app)
    runner = engine.runner
    assert (await runner.run_query("logs:chatty", {}, ANONYMOUS)).log_lines == []
    assert (await runner.run_mutation("logs:chatty_mutation", {}, ANONYMOUS)).log_lines == []
    assert (await runner.run_action("logs:chatty_action", {}, ANONYMOUS)).log_lines == []
    assert (await runner.run_query("logs:chatty", {}, ADMIN)).log_lines[0] == "[LOG] printed"
    mutation = await runner.run_mutation("logs:chatty_mutation", {}, ADMIN)
    assert mutation.log_lines == ["[LOG] from a mutation"]
