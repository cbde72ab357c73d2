"""Metrics: nothing is recorded until a process configures them; then function calls
are timed by the path the code resolved (never a path a client made up), with the
error code of a failure, and the whole is readable in Prometheus's text format.

Configuring sets process-wide state, so each case runs in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

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
    assert "trace_id" not in entry  # logged outside any span
    with pytest.raises(ConfigError, match="expected one of text, json"):
        configure_logging("sync", "node-7", "xml")


def test_spans_reach_the_trace_files_and_an_absent_collector_breaks_nothing(
    tmp_path: Path,
) -> None:
    import json
    import os

    env = {
        **os.environ,
        "SYNCLINE_TRACE_DIR": str(tmp_path),
        # A collector that is not there: export fails quietly in the background.
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
    }
    script = """
        from syncline.telemetry import configure_metrics, context_from, current_traceparent, tracer

        configure_metrics("gateway", "g-1")
        with tracer.start_as_current_span("gateway mutation"):
            parent = current_traceparent()
        import json, logging
        from syncline.telemetry import JsonLogFormatter
        with tracer.start_as_current_span("sync mutation", context=context_from(parent)):
            record = logging.LogRecord("x", logging.INFO, "f", 1, "inside", (), None)
            logged = json.loads(JsonLogFormatter("sync", "s-1").format(record))
        assert logged["trace_id"] == parent.split("-")[1], logged
        print(parent)
    """
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    parent = done.stdout.strip()
    (path,) = tmp_path.glob("gateway-g-1.jsonl")
    gateway, sync = [json.loads(line) for line in path.read_text().splitlines()]
    assert parent.split("-")[1] == gateway["trace_id"] == sync["trace_id"]
    assert sync["parent_span_id"] == gateway["span_id"]


def test_the_publish_of_a_commits_results_links_to_its_trace(tmp_path: Path) -> None:
    import json
    import os

    script = """
        from syncline.telemetry import (
            configure_metrics, current_traceparent, links_to, publish_span, tracer,
        )

        configure_metrics("sync", "s-1")
        with tracer.start_as_current_span("sync mutation"):
            made_here = current_traceparent()
        made_elsewhere = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        # As the commit log gives them: one untraced commit among them.
        publish_span(links_to([made_here, "", made_elsewhere]), {"syncline.queries.rerun": 1})
    """
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYNCLINE_TRACE_DIR": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    (path,) = tmp_path.glob("*.jsonl")
    spans = [json.loads(line) for line in path.read_text().splitlines()]
    (mutation,) = [s["span_id"] for s in spans if s["name"] == "sync mutation"]
    (publish,) = [s for s in spans if s["name"] == "sync publish"]
    assert [link["span_id"] for link in publish["links"]] == [mutation, "b7ad6b7169203331"]
