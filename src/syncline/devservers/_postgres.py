"""A private PostgreSQL cluster for tests and local clusters.

The cluster lives in its own data directory with its own port, TCP on 127.0.0.1 only,
trust authentication and superuser ``postgres``. PostgreSQL refuses to run as root;
when this process is root, ``initdb`` and ``postgres`` run as the ``postgres`` user,
and the directories this class creates are handed to that user.

``postgres`` is started directly as a child rather than through ``pg_ctl start``
(see ``_process``); readiness is read from ``postmaster.pid`` exactly as
``pg_ctl start -w`` reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import psycopg
from psycopg import sql

from syncline._errors import ConfigError
from syncline.devservers._errors import DevServerError
from syncline.devservers._process import (
    LocalServer,
    child_pids,
    clean_environment,
    pid_alive,
    pid_runs,
    spawn,
)

StopMode = Literal["smart", "fast", "immediate"]
"""PostgreSQL's shutdown modes: wait for clients, roll them back, or crash-stop."""

_STOP_SIGNALS: dict[str, signal.Signals] = {
    "smart": signal.SIGTERM,
    "fast": signal.SIGINT,
    "immediate": signal.SIGQUIT,
}
_PG_LIB = Path("/usr/lib/postgresql")
_SERVER_USER = "postgres"
_CONF_FILE = "syncline.conf"
# sun_path holds 108 bytes; PostgreSQL appends "/.s.PGSQL.<port>.lock".
_MAX_SOCKET_DIR_CHARS = 80
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_INSTALL_HINT = (
    "install the Debian package postgresql (apt-get install -y postgresql), "
    "or pass bin_dir= pointing at a directory with initdb and postgres"
)


@dataclass(frozen=True, slots=True)
class _Account:
    """The account the server runs as when this process is root."""

    uid: int
    """User id of ``postgres``."""
    gid: int
    """Primary group id of ``postgres``."""


def find_postgres_bin_dir(bin_dir: Path | None = None) -> Path:
    """The directory holding ``initdb`` and ``postgres``.

    ``bin_dir`` if given; else the directory of ``initdb`` on PATH (symlinks
    resolved); else the newest ``/usr/lib/postgresql/<version>/bin``.
    """
    candidates: list[Path] = []
    if bin_dir is not None:
        candidates.append(Path(bin_dir))
    else:
        on_path = shutil.which("initdb")
        if on_path is not None:
            candidates.append(Path(on_path).resolve().parent)
        versions = sorted(
            (p for p in _PG_LIB.glob("*/bin") if p.parent.name.isdigit()),
            key=lambda p: int(p.parent.name),
            reverse=True,
        )
        candidates.extend(versions)
    for candidate in candidates:
        if all(os.access(candidate / name, os.X_OK) for name in ("initdb", "postgres")):
            return candidate
    where = str(bin_dir) if bin_dir is not None else f"PATH or {_PG_LIB}/*/bin"
    raise ConfigError(
        f"PostgreSQL's initdb and postgres were not found in {where}: {_INSTALL_HINT}"
    )


def _quote(value: str) -> str:
    """A postgresql.conf string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


class LocalPostgres(LocalServer):
    """A PostgreSQL cluster in ``data_dir``, listening on 127.0.0.1:``port``.

    ``data_dir`` is the cluster's data directory; ``start`` runs ``initdb`` there
    when it holds no cluster yet, so a second ``start`` (or a new object on the same
    directory) reuses the data. The server log is ``data_dir/postgres.log``.

    When this process is root the postgres user must be able to reach ``data_dir``:
    put it under a directory others may traverse (``/tmp/x``, not pytest's
    ``tmp_path``, which is private to root).
    """

    _name = "PostgreSQL"
    _marker = "postgres"

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        fsync: bool = False,
        extra_settings: Mapping[str, str] = {},
        bin_dir: Path | None = None,
        start_timeout_seconds: float = 60.0,
        stop_timeout_seconds: float = 30.0,
    ) -> None:
        """Describe the cluster; nothing happens until ``start``.

        ``port``: a free port is picked when None. ``fsync``: off by default, for
        tests: a crash of the server (not of the machine) still loses no committed
        transaction, as ``synchronous_commit`` stays on. ``extra_settings`` override
        the defaults (``postgresql.conf`` names and values). ``bin_dir``: where
        ``initdb`` and ``postgres`` are, found on PATH or under
        ``/usr/lib/postgresql`` when None.
        """
        super().__init__(
            data_dir,
            port=port,
            start_timeout_seconds=start_timeout_seconds,
            stop_timeout_seconds=stop_timeout_seconds,
        )
        for name in extra_settings:
            if not _SETTING_NAME.match(name):
                raise ConfigError(f"invalid PostgreSQL setting name {name!r}")
        self._fsync = fsync
        self._extra_settings = dict(extra_settings)
        self._bin_dir_option = bin_dir
        self._bin_dir: Path | None = None
        self._account: _Account | None = None
        self._private_socket_dir: Path | None = None

    # -- public surface --------------------------------------------------------

    @property
    def log_file(self) -> Path:
        return self._data_dir / "postgres.log"

    def dsn(self, dbname: str = "postgres") -> str:
        """A libpq connection string for ``dbname`` as superuser ``postgres``."""
        return f"host=127.0.0.1 port={self._port} user=postgres dbname={dbname}"

    async def create_database(self, name: str) -> str:
        """Create database ``name`` and return its connection string."""
        async with await psycopg.AsyncConnection.connect(self.dsn(), autocommit=True) as conn:
            await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.dsn(name)

    async def drop_database(self, name: str) -> None:
        """Drop database ``name``, disconnecting its sessions first."""
        async with await psycopg.AsyncConnection.connect(self.dsn(), autocommit=True) as conn:
            await conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    async def stop(self, mode: StopMode = "fast") -> None:
        """Shut the cluster down in ``mode`` (SIGKILL after the stop timeout). Idempotent."""
        await self._stop(_STOP_SIGNALS[mode])

    async def restart(self, mode: StopMode = "immediate") -> None:
        """Stop in ``mode`` and start again; ``immediate`` makes the start a crash recovery."""
        await self.stop(mode)
        # Seen here, rarely: the postmaster started right after an immediate stop dies
        # with SIGSEGV before it is ready. A second start recovers normally.
        for attempt in range(3):
            try:
                await self.start()
                return
            except DevServerError as exc:
                if attempt == 2 or "exited with status -" not in str(exc):
                    raise
                await asyncio.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL the postmaster and its worker processes, as a crash would."""
        self._kill_process()

    # -- start -----------------------------------------------------------------

    def _prepare(self) -> None:
        self._bin_dir = find_postgres_bin_dir(self._bin_dir_option)
        self._account = _server_account()
        self._make_dirs()
        running = self._pid_from_file()
        if running is not None:
            raise DevServerError(
                f"a PostgreSQL server (pid {running}) already runs on {self._data_dir}"
            )

    async def _before_spawn(self) -> None:
        self._prepare()
        if not self._initialised():
            await self._initdb()
        self._write_settings()

    def _initialised(self) -> bool:
        return (self._data_dir / "PG_VERSION").exists()

    async def _initdb(self) -> None:
        # initdb takes about half a second: run it off the event loop.
        await asyncio.to_thread(self._run_initdb)

    def _run_initdb(self) -> None:
        assert self._bin_dir is not None
        argv = [
            str(self._bin_dir / "initdb"),
            "-D",
            str(self._data_dir),
            "--auth=trust",
            "--no-sync",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            # The environment's locale may not exist here; C sorts bytewise everywhere.
            "--no-locale",
        ]
        account = self._account
        try:
            done = subprocess.run(
                argv,
                cwd=self._data_dir,
                env=clean_environment(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=self._start_timeout_seconds,
                check=False,
                user=account.uid if account else None,
                group=account.gid if account else None,
                extra_groups=[] if account else None,
            )
        except subprocess.TimeoutExpired as exc:
            raise DevServerError(
                f"initdb did not finish within {self._start_timeout_seconds:g} s"
            ) from exc
        output = done.stdout.decode("utf-8", "replace")
        if done.returncode != 0:
            raise DevServerError(
                f"initdb {self._data_dir} failed with status {done.returncode}:\n{output}"
            )
        self._append_log(f"--- initdb ---\n{output}")
        with (self._data_dir / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\n# Written by syncline.devservers on each start.\ninclude '{_CONF_FILE}'\n"
            )

    def _append_log(self, text: str) -> None:
        with self.log_file.open("a") as log:
            log.write(text)
        self._give(self.log_file)

    def _settings(self) -> dict[str, str]:
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self._port),
            "unix_socket_directories": str(self._socket_dir()),
            "wal_level": "logical",
            "max_connections": "200",
            "max_wal_senders": "20",
            "max_replication_slots": "20",
            "fsync": "on" if self._fsync else "off",
            "synchronous_commit": "on",
            "log_line_prefix": "%m [%p] %q%u@%d ",
        }
        settings.update(self._extra_settings)
        return settings

    def _write_settings(self) -> None:
        lines = [f"{name} = {_quote(value)}\n" for name, value in self._settings().items()]
        path = self._data_dir / _CONF_FILE
        path.write_text("".join(lines))
        self._give(path)

    def _socket_dir(self) -> Path:
        """The data directory's parent when the server may write there and the path
        fits in a socket address; else a short private directory."""
        parent = self._data_dir.parent
        if len(str(parent)) <= _MAX_SOCKET_DIR_CHARS and self._server_owns(parent):
            return parent
        if self._private_socket_dir is None:
            self._private_socket_dir = Path(tempfile.mkdtemp(prefix="syncline-pg-", dir="/tmp"))
            self._private_socket_dir.chmod(0o755)
            self._give(self._private_socket_dir)
        return self._private_socket_dir

    def _spawn(self, log: IO[bytes]) -> subprocess.Popen[bytes]:
        assert self._bin_dir is not None
        account = self._account
        return spawn(
            [str(self._bin_dir / "postgres"), "-D", str(self._data_dir)],
            log=log,
            cwd=self._data_dir,
            env=clean_environment(),
            user=account.uid if account else None,
            group=account.gid if account else None,
        )

    async def _ready(self) -> bool:
        # Line 8 of postmaster.pid is the status pg_ctl waits for.
        lines = self._read_postmaster_pid()
        pid = self._proc.pid if self._proc is not None else None
        return len(lines) >= 8 and lines[0] == str(pid) and lines[7].strip() == "ready"

    # -- stop ----------------------------------------------------------------------

    def _pid_from_file(self) -> int | None:
        lines = self._read_postmaster_pid()
        if not lines or not lines[0].strip().isdigit():
            return None
        pid = int(lines[0])
        return pid if pid_runs(pid, self._marker) else None

    def _read_postmaster_pid(self) -> list[str]:
        try:
            return (self._data_dir / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, NotADirectoryError):
            return []

    def _kill_tree(self, pid: int) -> None:
        # Collect the workers first: once the postmaster dies they are reparented.
        workers = child_pids(pid)
        for target in [pid, *workers]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(target, signal.SIGKILL)
        # A worker still attached to shared memory would block the next start.
        for worker in workers:
            _wait_gone(worker, self._stop_timeout_seconds)

    def _after_stop(self) -> None:
        if self._private_socket_dir is not None:
            shutil.rmtree(self._private_socket_dir, ignore_errors=True)
            self._private_socket_dir = None

    # -- ownership -------------------------------------------------------------------

    def _give(self, path: Path) -> None:
        if self._account is not None:
            os.chown(path, self._account.uid, self._account.gid)

    def _server_owns(self, path: Path) -> bool:
        if self._account is None:
            return os.access(path, os.W_OK)
        try:
            return path.stat().st_uid == self._account.uid
        except FileNotFoundError:
            return False

    def _make_dirs(self) -> None:
        missing = [p for p in [self._data_dir, *self._data_dir.parents] if not p.exists()]
        for directory in reversed(missing):
            directory.mkdir(mode=0o700 if directory == self._data_dir else 0o755)
            self._give(directory)
        if self._account is not None:
            blocked = _first_untraversable(self._data_dir.parent, self._account)
            if blocked is not None:
                raise ConfigError(
                    f"the postgres user cannot reach {self._data_dir}: {blocked} is not "
                    "traversable by others; put the data directory under a directory "
                    "with mode 0755 (e.g. tempfile.mkdtemp() then chmod 0o755)"
                )
            if self._data_dir.stat().st_uid != self._account.uid and not self._initialised():
                self._give(self._data_dir)


def _server_account() -> _Account | None:
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(_SERVER_USER)
    except KeyError as exc:
        raise ConfigError(
            f"PostgreSQL cannot run as root and there is no {_SERVER_USER!r} user: {_INSTALL_HINT}"
        ) from exc
    return _Account(uid=entry.pw_uid, gid=entry.pw_gid)


def _first_untraversable(directory: Path, account: _Account) -> Path | None:
    """The first directory on the way to ``directory`` the account cannot enter."""
    groups = {account.gid, *os.getgrouplist(_SERVER_USER, account.gid)}
    for path in [*reversed(directory.parents), directory]:
        info = path.stat()
        if info.st_uid == account.uid:
            allowed = bool(info.st_mode & stat.S_IXUSR)
        elif info.st_gid in groups:
            allowed = bool(info.st_mode & stat.S_IXGRP)
        else:
            allowed = bool(info.st_mode & stat.S_IXOTH)
        if not allowed:
            return path
    return None


def _wait_gone(pid: int, timeout_seconds: float) -> None:
    """Block until ``pid`` is dead or a zombie; SIGKILL makes this milliseconds."""
    deadline = time.monotonic() + timeout_seconds
    while pid_alive(pid):
        if time.monotonic() > deadline:
            raise DevServerError(f"PostgreSQL worker {pid} survived SIGKILL")
        time.sleep(0.005)
