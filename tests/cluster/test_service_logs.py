"""A service asked for JSON logs writes one JSON object per log line, and one given a
log format it does not know stops at once, saying which formats exist."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from tests.cluster.conftest import BANK, SESSION_TIMEOUT_SECONDS, ServiceProcess

pytestmark = pytest.mark.cluster


def _txn(pg_dsn: str, zk_hosts: str, log: Path, log_format: str) -> ServiceProcess:
    args = ["--app", str(BANK), "--pg-dsn", pg_dsn, "--zk-hosts", zk_hosts]
    args += ["--session-timeout", str(SESSION_TIMEOUT_SECONDS)]
    return ServiceProcess("txn", args, log, env={"SYNCLINE_LOG_FORMAT": log_format})


async def test_json_logs(pg_dsn: str, zk_hosts: str, tmp_path: Path) -> None:
    process = _txn(pg_dsn, zk_hosts, tmp_path / "txn.log", "json")
    process.start()
    try:
        deadline = time.monotonic() + 30
        while "is the leader" not in process.log():
            assert time.monotonic() < deadline, process.log()[-2000:]
            await asyncio.sleep(0.1)
    finally:
        process.stop()
    entries = [
        json.loads(line)
        for line in process.log().splitlines()
        if line.startswith("{")  # the one plain line is the readiness banner
    ]
    assert any("is the leader" in e["message"] for e in entries)
    assert {e["service"] for e in entries} == {"txn"}
    assert all({"time", "level", "logger", "message", "instance"} <= e.keys() for e in entries)
    plain = [line for line in process.log().splitlines() if line and not line.startswith("{")]
    assert all("ready on" in line for line in plain), plain


async def test_an_unknown_log_format_stops_the_service(
    pg_dsn: str, zk_hosts: str, tmp_path: Path
) -> None:
    process = _txn(pg_dsn, zk_hosts, tmp_path / "txn.log", "xml")
    process.start()
    assert process.process is not None
    assert await asyncio.to_thread(process.process.wait, 30) == 2
    assert "SYNCLINE_LOG_FORMAT='xml': expected one of text, json" in process.log()
