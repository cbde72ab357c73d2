"""Metrics: nothing is recorded until a process configures them; then function calls
are timed by the path the code resolved (never a path a client made up), with the
error code of a failure, and the whole is readable in Prometheus's text format.

Configuring sets process-wide state, so each case runs in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


def _run(script: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_calls_are_timed_by_resolved_path_and_outcome() -> None:
    text = _run(
        """
        from syncline._errors import FunctionNotFoundError
        from syncline.telemetry import configure_metrics, recorded_call

        telemetry = configure_metrics("sync", "node-1")
        with recorded_call("mutation") as call:
            call["syncline.function.path"] = "messages:send"
        try:
            with recorded_call("query"):
                raise FunctionNotFoundError("no such function: made:up")
        except FunctionNotFoundError:
            pass
        with recorded_call("query", record=False) as call:
            call["syncline.function.path"] = "not:recorded"
        print(telemetry.exposition().decode())
        """
    )
    assert 'service_name="syncline-sync"' in text
    assert 'service_instance_id="node-1"' in text
    counts = [line for line in text.splitlines() if "function_duration_seconds_count" in line]
    assert len(counts) == 2
    (ok,) = [line for line in counts if 'syncline_function_path="messages:send"' in line]
    assert 'error_type=""' in ok and ok.endswith(" 1.0")
    (failed,) = [line for line in counts if 'syncline_function_path="unresolved"' in line]
    assert 'error_type="FunctionNotFound"' in failed
    assert "made:up" not in text and "not:recorded" not in text


def test_nothing_is_exported_before_metrics_are_configured() -> None:
    assert (
        _run(
            """
        from syncline.telemetry import configured, occ_conflicts
        occ_conflicts.add(1)
        print(configured())
        """
        ).strip()
        == "None"
    )


def test_json_logs_are_one_object_per_line_naming_the_service() -> None:
    import json
    import logging

    from syncline._errors import ConfigError
    from syncline.telemetry import JsonLogFormatter, configure_logging

    formatter = JsonLogFormatter("sync", "node-7")
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord(
            "syncline.x", logging.ERROR, __file__, 1, "lost %s", ("it",), sys.exc_info()
        )
    entry = json.loads(formatter.format(record))
    assert entry["level"] == "ERROR" and entry["message"] == "lost it"
    assert (entry["service"], entry["instance"], entry["logger"]) == (
        "sync",
        "node-7",
        "syncline.x",
    )
    assert "ValueError: boom" in entry["exception"]
    assert entry["time"].endswith("+00:00")
    with pytest.raises(ConfigError, match="expected one of text, json"):
        configure_logging("sync", "node-7", "xml")
