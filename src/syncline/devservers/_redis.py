"""A private Redis for tests and local clusters: no persistence, loopback only."""

from __future__ import annotations

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


class LocalRedis(LocalServer):
    """A ``redis-server`` on 127.0.0.1:``port`` with its pid file and log in ``data_dir``.

    Nothing is persisted (``--save ''``, no AOF): a restart starts empty.
    """

    _name = "Redis"
    _marker = "redis-server"

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        start_timeout_seconds: float = 30.0,
        stop_timeout_seconds: float = 30.0,
    ) -> None:
        """Describe the server; nothing happens until ``start``. A free port is
        picked when ``port`` is None."""
        super().__init__(
            data_dir,
            port=port,
            start_timeout_seconds=start_timeout_seconds,
            stop_timeout_seconds=stop_timeout_seconds,
        )
        self._binary = ""

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self._port}/0"

    @property
    def log_file(self) -> Path:
        return self._data_dir / "redis.log"

    @property
    def _pid_file(self) -> Path:
        return self._data_dir / "redis.pid"

    def _prepare(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ConfigError(
                "redis-server was not found on PATH: install the Debian package "
                "redis-server (apt-get install -y redis-server)"
            )
        self._binary = binary
        self._data_dir.mkdir(parents=True, exist_ok=True)

    def _spawn(self, log: IO[bytes]) -> subprocess.Popen[bytes]:
        argv = [
            self._binary,
            "--port",
            str(self._port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self._data_dir),
            "--pidfile",
            str(self._pid_file),
            "--daemonize",
            "no",
            "--logfile",
            "",
        ]
        return spawn(argv, log=log, cwd=self._data_dir, env=clean_environment())

    async def _ready(self) -> bool:
        return await probe_tcp(self._port, b"PING\r\n", read_all=False) == b"+PONG\r\n"

    def _pid_from_file(self) -> int | None:
        return read_pid_file(self._pid_file, self._marker)
