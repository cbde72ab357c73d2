"""A standalone ZooKeeper for tests and local clusters, run from Debian's jars.

A short tick makes sessions expire quickly and precisely: ZooKeeper checks
expiry once per tick, and ``minSessionTimeout`` bounds how short a client may ask.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import IO

from syncline._errors import ConfigError
from syncline.devservers._process import (
    LocalServer,
    clean_environment,
    probe_tcp,
    read_pid_file,
    spawn,
)

_JAVA_DIR = Path("/usr/share/java")
_MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
_FOUR_LETTER_WORDS = "ruok,envi,srvr,mntr,stat,cons"


def zookeeper_command(config: Path) -> list[str]:
    """``java ... QuorumPeerMain <config>`` with Debian's classpath.

    ``zookeeper.jar`` names its dependencies in its manifest's Class-Path, so the
    classpath adds only a logging backend (slf4j-simple, to stderr).
    """
    java = shutil.which("java")
    if java is None:
        raise ConfigError(
            "java was not found on PATH: install the Debian package zookeeper "
            "(it pulls in a Java runtime): apt-get install -y zookeeper"
        )
    jar = _JAVA_DIR / "zookeeper.jar"
    if not jar.exists():
        raise ConfigError(
            f"{jar} was not found: install the Debian package zookeeper "
            "(apt-get install -y zookeeper)"
        )
    classpath = [jar]
    logger = _JAVA_DIR / "slf4j-simple.jar"
    if logger.exists():
        classpath.append(logger)
    return [
        java,
        "-Xms32m",
        "-Xmx512m",
        "-XX:+UseSerialGC",
        "-XX:-UsePerfData",
        "-Djava.net.preferIPv4Stack=true",
        "-Dorg.slf4j.simpleLogger.showDateTime=true",
        "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSS",
        "-cp",
        os.pathsep.join(str(p) for p in classpath),
        _MAIN_CLASS,
        str(config),
    ]


class LocalZooKeeper(LocalServer):
    """A standalone ZooKeeper with its data and log in ``data_dir``.

    Data (``data_dir/data``) survives ``stop``/``start`` and ``kill``; so do
    sessions, until their timeout. ``hosts`` is the kazoo connection string.
    """

    _name = "ZooKeeper"
    _marker = _MAIN_CLASS

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        tick_seconds: float = 0.2,
        min_session_timeout_seconds: float = 1.0,
        max_session_timeout_seconds: float = 30.0,
        fsync: bool = False,
        start_timeout_seconds: float = 60.0,
        stop_timeout_seconds: float = 30.0,
    ) -> None:
        """Describe the server; nothing happens until ``start``.

        ``port``: a free port is picked when None. ``tick_seconds``: ZooKeeper's
        tickTime, the granularity of session expiry. Clients' requested session
        timeouts are clamped to [``min_session_timeout_seconds``,
        ``max_session_timeout_seconds``]; the minimum must be at least two ticks.
        ``fsync``: whether each write is forced to disk (off for tests).
        """
        super().__init__(
            data_dir,
            port=port,
            start_timeout_seconds=start_timeout_seconds,
            stop_timeout_seconds=stop_timeout_seconds,
        )
        if not 2 * tick_seconds <= min_session_timeout_seconds <= max_session_timeout_seconds:
            raise ConfigError(
                "ZooKeeper needs 2 * tick_seconds <= min_session_timeout_seconds "
                "<= max_session_timeout_seconds"
            )
        self._tick_ms = max(1, round(tick_seconds * 1000))
        self._min_session_ms = round(min_session_timeout_seconds * 1000)
        self._max_session_ms = round(max_session_timeout_seconds * 1000)
        self._fsync = fsync
        self._command: list[str] = []

    @property
    def hosts(self) -> str:
        """The connection string, ``127.0.0.1:<port>`` (append a chroot as needed)."""
        return f"127.0.0.1:{self._port}"

    @property
    def log_file(self) -> Path:
        return self._data_dir / "zookeeper.log"

    @property
    def config_file(self) -> Path:
        """The zoo.cfg written on each start."""
        return self._data_dir / "zoo.cfg"

    @property
    def _pid_file(self) -> Path:
        return self._data_dir / "zookeeper.pid"

    def _prepare(self) -> None:
        self._command = zookeeper_command(self.config_file)
        (self._data_dir / "data").mkdir(parents=True, exist_ok=True)
        settings = {
            "tickTime": str(self._tick_ms),
            "minSessionTimeout": str(self._min_session_ms),
            "maxSessionTimeout": str(self._max_session_ms),
            "initLimit": "10",
            "syncLimit": "5",
            "dataDir": str(self._data_dir / "data"),
            "clientPort": str(self._port),
            "clientPortAddress": "127.0.0.1",
            "maxClientCnxns": "0",
            # Otherwise an admin HTTP server takes port 8080.
            "admin.enableServer": "false",
            # kazoo's server_version() needs envi.
            "4lw.commands.whitelist": _FOUR_LETTER_WORDS,
            "forceSync": "yes" if self._fsync else "no",
            # Transaction logs are preallocated in 64 MB steps by default.
            "preAllocSize": "4096",
        }
        self.config_file.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))

    def _spawn(self, log: IO[bytes]) -> subprocess.Popen[bytes]:
        return spawn(self._command, log=log, cwd=self._data_dir, env=clean_environment())

    def _after_spawn(self, pid: int) -> None:
        self._pid_file.write_text(f"{pid}\n")

    async def _ready(self) -> bool:
        if await probe_tcp(self._port, b"ruok", read_all=True) != b"imok":
            return False
        # ruok answers before the database is loaded; srvr only once serving.
        status = await probe_tcp(self._port, b"srvr", read_all=True)
        return b"Mode:" in status

    def _pid_from_file(self) -> int | None:
        return read_pid_file(self._pid_file, self._marker)

    def _after_stop(self) -> None:
        self._pid_file.unlink(missing_ok=True)
