"""The local servers behind the integration tests: start, isolate, crash, stop."""

from __future__ import annotations

import os
import signal
import socket
import sys
import types
import uuid
from pathlib import Path

import psycopg
import pytest
import redis.asyncio
from kazoo.client import KazooClient, KazooState

import syncline.devservers as devservers
from syncline._errors import ConfigError
from syncline.devservers import (
    DevServerError,
    LocalPostgres,
    LocalRedis,
    LocalZooKeeper,
    ServerState,
    docker_available,
    free_port,
)
from syncline.devservers._process import child_pids, pid_alive
from tests.fixtures.infra import assert_eventually, expire_zk_session


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_all_is_sorted_and_exported() -> None:
    assert devservers.__all__ == sorted(devservers.__all__)
    assert all(hasattr(devservers, name) for name in devservers.__all__)


def test_free_port_can_be_bound() -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


# -- PostgreSQL --------------------------------------------------------------------------


async def test_postgres_database_is_fresh_and_configured(pg_dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
        cur = await conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert await cur.fetchone() == (0,)
        await conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        await conn.execute("INSERT INTO t VALUES (1, 'a'), (2, 'b')")
        cur = await conn.execute("SELECT v FROM t ORDER BY id")
        assert await cur.fetchall() == [("a",), ("b",)]
        settings = {}
        for name in ("wal_level", "fsync", "synchronous_commit", "max_connections"):
            cur = await conn.execute(f"SHOW {name}")
            row = await cur.fetchone()
            assert row is not None
            settings[name] = row[0]
    assert settings == {
        "wal_level": "logical",
        "fsync": "off",
        "synchronous_commit": "on",
        "max_connections": "200",
    }


async def test_postgres_immediate_restart_keeps_committed_rows(
    postgres_server: LocalPostgres, pg_dsn: str
) -> None:
    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
        await conn.execute("CREATE TABLE t (id int)")
        await conn.execute("INSERT INTO t SELECT generate_series(1, 1000)")
    old_pid = postgres_server.pid
    assert old_pid is not None

    await postgres_server.restart(mode="immediate")

    assert _gone(old_pid)
    assert postgres_server.pid not in (None, old_pid)
    assert "automatic recovery in progress" in postgres_server.log_file.read_text()
    async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
        cur = await conn.execute("SELECT count(*) FROM t")
        assert await cur.fetchone() == (1000,)


async def test_postgres_kill_stops_every_process_and_start_recovers(
    postgres_server: LocalPostgres, pg_dsn: str
) -> None:
    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
        await conn.execute("CREATE TABLE t (id int)")
        await conn.execute("INSERT INTO t VALUES (7)")
    pid = postgres_server.pid
    assert pid is not None
    workers = child_pids(pid)
    assert workers, "a running postmaster has checkpointer, walwriter, ..."

    postgres_server.kill()

    assert postgres_server.state is ServerState.STOPPED
    assert postgres_server.pid is None
    assert _gone(pid)
    assert not any(pid_alive(w) for w in workers), "a killed postmaster's workers die with it"
    await postgres_server.start()
    async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
        cur = await conn.execute("SELECT id FROM t")
        assert await cur.fetchall() == [(7,)]


async def test_postgres_own_cluster_settings_and_stop(infra_dir: Path) -> None:
    server = LocalPostgres(
        infra_dir / f"pg-{uuid.uuid4().hex[:8]}" / "data",
        fsync=True,
        extra_settings={"work_mem": "8MB", "application_name": "it's quoted"},
    )
    async with server:
        pid = server.pid
        assert pid is not None
        dsn = await server.create_database("app")
        assert dsn == f"host=127.0.0.1 port={server.port} user=postgres dbname=app"
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            values = []
            for name in ("fsync", "work_mem", "application_name", "port"):
                cur = await conn.execute(f"SHOW {name}")
                row = await cur.fetchone()
                assert row is not None
                values.append(row[0])
        assert values == ["on", "8MB", "it's quoted", str(server.port)]
    assert _gone(pid)
    assert server.pid is None
    await server.stop()  # idempotent
    assert server.state is ServerState.STOPPED


async def test_postgres_missing_binaries_name_the_package(tmp_path: Path) -> None:
    server = LocalPostgres(tmp_path / "data", bin_dir=tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="Debian package postgresql"):
        await server.start()
    assert server.pid is None


# -- ZooKeeper -----------------------------------------------------------------------------


def test_zookeeper_chroot_ephemeral_node_and_session_expiry(
    zookeeper_server: LocalZooKeeper, zk_hosts: str
) -> None:
    chroot = zk_hosts[zk_hosts.index("/") :]
    assert chroot.startswith("/kazootests")
    states: list[str] = []
    client = KazooClient(hosts=zk_hosts, timeout=2.0)
    client.add_listener(states.append)
    observer = KazooClient(hosts=zookeeper_server.hosts)
    client.start(timeout=10)
    observer.start(timeout=10)
    try:
        client.create("/leader", b"me", ephemeral=True)
        assert observer.get(f"{chroot}/leader")[0] == b"me"

        expire_zk_session(client)

        assert KazooState.LOST in states
        assert observer.exists(f"{chroot}/leader") is None
    finally:
        client.stop()
        client.close()
        observer.stop()
        observer.close()


async def test_zookeeper_kill_restart_and_stop(
    zookeeper_server: LocalZooKeeper, zk_hosts: str
) -> None:
    client = KazooClient(hosts=zk_hosts)
    client.start(timeout=10)
    client.create("/kept", b"v1")
    client.stop()
    client.close()
    pid = zookeeper_server.pid
    assert pid is not None

    zookeeper_server.kill()
    assert _gone(pid)
    await zookeeper_server.start()
    restarted = zookeeper_server.pid
    assert restarted not in (None, pid)
    await zookeeper_server.restart()
    assert restarted is not None and _gone(restarted)

    client = KazooClient(hosts=zk_hosts)
    client.start(timeout=10)
    try:
        assert client.get("/kept")[0] == b"v1"
    finally:
        client.stop()
        client.close()

    last = zookeeper_server.pid
    assert last is not None
    await zookeeper_server.stop()
    assert _gone(last)
    assert zookeeper_server.pid is None
    await zookeeper_server.stop()  # idempotent; zk_hosts' teardown starts it again


async def test_zookeeper_rejects_session_bounds_below_two_ticks(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="2 \\* tick_seconds"):
        LocalZooKeeper(tmp_path, tick_seconds=1.0, min_session_timeout_seconds=1.0)


async def test_zookeeper_without_java_names_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="Debian package zookeeper"):
        await LocalZooKeeper(tmp_path / "zk").start()


# -- Redis --------------------------------------------------------------------------------


async def test_redis_ping_set_get(redis_server: LocalRedis, redis_prefix: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        assert await client.ping() is True
        await client.set(f"{redis_prefix}k", b"v")
        assert await client.get(f"{redis_prefix}k") == b"v"
    finally:
        await client.aclose()


async def test_redis_stop_and_kill_leave_no_process(tmp_path: Path) -> None:
    server = LocalRedis(tmp_path / "redis")
    async with server:
        first = server.pid
        assert first is not None
        server.kill()
        assert _gone(first)
        server.kill()  # idempotent
        await server.start()
        second = server.pid
        assert second not in (None, first)
    assert second is not None and _gone(second)
    assert server.pid is None
    await server.stop()


async def test_a_server_that_died_on_its_own_starts_again(tmp_path: Path) -> None:
    server = LocalRedis(tmp_path / "redis")
    async with server:
        first = server.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)  # not through the object: as a crash would
        await assert_eventually(lambda: server.pid is None, what="the crash to show")
        await server.start()
        assert server.pid not in (None, first)


async def test_start_failure_reports_the_log_tail(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = LocalRedis(tmp_path / "redis", port=taken.getsockname()[1])
        with pytest.raises(DevServerError, match="Address already in use"):
            await server.start()
    assert server.pid is None
    assert server.state is ServerState.STOPPED


async def test_redis_without_binary_names_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="Debian package redis-server"):
        await LocalRedis(tmp_path / "redis").start()


# -- Docker detection -------------------------------------------------------------------------


class _FakeClient:
    def __init__(self, answer: bool | Exception) -> None:
        self.answer = answer
        self.closed = False

    def ping(self) -> bool:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize(
    ("answer", "expected"),
    [(True, True), (RuntimeError("Error while fetching server API version"), False)],
)
def test_docker_available_pings_the_daemon(
    monkeypatch: pytest.MonkeyPatch, answer: bool | Exception, expected: bool
) -> None:
    client = _FakeClient(answer)
    fake = types.ModuleType("docker")
    fake.from_env = lambda: client  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "docker", fake)
    assert docker_available() is expected
    assert client.closed


def test_docker_available_without_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "docker", None)
    assert docker_available() is False


async def test_assert_eventually_fails_at_the_deadline() -> None:
    with pytest.raises(AssertionError, match="the impossible"):
        await assert_eventually(lambda: False, timeout_seconds=0.05, what="the impossible")
