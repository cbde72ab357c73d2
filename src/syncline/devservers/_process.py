"""Process plumbing shared by the local servers: spawn, probe, stop by pid, reap.

Every server runs as a direct child of this process (``subprocess.Popen``), never
through a launcher that exits (``pg_ctl start``, ``--daemonize yes``): on machines
whose init does not reap orphans, an orphaned server stays a zombie after it exits,
and its pid would look alive. As our child it is reaped by ``Popen.poll``.

``Popen`` is polled rather than awaited through an asyncio child watcher, so a
server object is bound to no event loop: a session-scoped test fixture may start it
in one loop and a test restart it in another.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import enum
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from syncline.devservers._errors import DevServerError

_POLL_SECONDS = 0.01
_LOG_TAIL_LINES = 40
# A probe that gets no answer in this time is retried; servers answer in milliseconds.
_PROBE_SECONDS = 0.5


_handed_out: set[int] = set()
"""Ports this process has handed out: servers started later must not share one."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picked it), and
    that this process has not handed out before: a cluster picks all its ports
    before starting anything, and the OS may offer a port twice meanwhile."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file, or a note that there is none."""
    try:
        with path.open("rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - 64 * 1024))
            text = log.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` names a running process; a zombie counts as dead."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        # No procfs (not Linux): fall back to the signal probe.
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    # The state follows the parenthesised command name, which may contain spaces.
    return stat[stat.rindex(")") + 2 :].split(" ", 1)[0] not in ("Z", "X")


def pid_runs(pid: int, marker: str) -> bool:
    """Whether ``pid`` is alive and its command line contains ``marker``.

    Guards stop-by-pid-file against a pid the OS has since given to another process.
    """
    if not pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return marker.encode() in cmdline


def child_pids(pid: int) -> list[int]:
    """The live children of ``pid`` (by scanning /proc; empty where there is none)."""
    children = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split(" ")
        if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
            children.append(int(entry))
    return children


def read_pid_file(path: Path, marker: str) -> int | None:
    """The pid in the first line of ``path`` if that process is alive and is ours."""
    try:
        first = path.read_text().split("\n", 1)[0].strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not first.isdigit():
        return None
    pid = int(first)
    return pid if pid_runs(pid, marker) else None


def clean_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without variables that would steer the servers."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PG", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "REDIS"))
    }
    env.update(extra or {})
    return env


class ServerState(enum.Enum):
    """Lifecycle of a local server object."""

    STOPPED = "stopped"
    """Not started by this object, or stopped, or killed."""
    RUNNING = "running"
    """Started by this object and ready to serve."""


class LocalServer(abc.ABC):
    """A server process this object starts, probes, and stops by pid.

    Subclasses name the server, build its command line and probe readiness; this
    class owns the process: log file, start deadline, graceful stop with a SIGKILL
    fallback, and reaping.
    """

    _name: str
    """Human name used in messages, e.g. ``"PostgreSQL"``."""
    _marker: str
    """A string in the server's command line, checked before signalling a pid from a file."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None,
        start_timeout_seconds: float,
        stop_timeout_seconds: float,
    ) -> None:
        self._data_dir = Path(data_dir).absolute()
        self._port = port if port is not None else free_port()
        self._start_timeout_seconds = start_timeout_seconds
        self._stop_timeout_seconds = stop_timeout_seconds
        self._proc: subprocess.Popen[bytes] | None = None
        self._state = ServerState.STOPPED

    # -- what subclasses provide ----------------------------------------------

    @property
    @abc.abstractmethod
    def log_file(self) -> Path:
        """Where the server's stdout and stderr go (appended across restarts)."""

    @abc.abstractmethod
    def _prepare(self) -> None:
        """Check binaries and write configuration; raise ConfigError if not installed."""

    @abc.abstractmethod
    def _spawn(self, log: IO[bytes]) -> subprocess.Popen[bytes]:
        """Start the server process with stdout and stderr going to ``log``."""

    @abc.abstractmethod
    async def _ready(self) -> bool:
        """Whether the server answers; called until it does or the deadline passes."""

    @abc.abstractmethod
    def _pid_from_file(self) -> int | None:
        """The pid the server recorded, if that process is still running."""

    # -- public surface --------------------------------------------------------

    @property
    def name(self) -> str:
        """What the server is, for messages (e.g. "PostgreSQL")."""
        return self._name

    @property
    def port(self) -> int:
        """The TCP port on 127.0.0.1 the server listens on."""
        return self._port

    @property
    def data_dir(self) -> Path:
        """The server's directory."""
        return self._data_dir

    @property
    def state(self) -> ServerState:
        """Whether this object has the server running."""
        return self._state

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs, else None."""
        if self._proc is not None:
            return self._proc.pid if self._proc.poll() is None else None
        return self._pid_from_file()

    async def start(self) -> None:
        """Start the server and wait until it answers.

        Raises ConfigError when the server is not installed, and DevServerError (with
        the tail of the server's log) when it exits or does not answer in time.
        """
        if self._state is ServerState.RUNNING and self.pid is None:
            # It died on its own (a crash, or a fault injected by a test): start anew.
            self._kill_process()
        if self._state is ServerState.RUNNING:
            raise DevServerError(f"{self._name} in {self._data_dir} is already running")
        await self._before_spawn()
        self._launch()
        deadline = time.monotonic() + self._start_timeout_seconds
        try:
            while True:
                # Before the probe: a port taken by another listener accepts the probe.
                self._check_still_running()
                if await self._ready():
                    break
                if time.monotonic() > deadline:
                    raise DevServerError(
                        f"{self._name} did not become ready within "
                        f"{self._start_timeout_seconds:g} s; last lines of {self.log_file}:\n"
                        f"{log_tail(self.log_file)}"
                    )
                await asyncio.sleep(_POLL_SECONDS)
        except BaseException:
            self._kill_process()
            raise
        self._state = ServerState.RUNNING

    async def stop(self) -> None:
        """Stop the server gracefully (SIGKILL after the stop timeout). Idempotent."""
        await self._stop(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the server, as a crash would. Idempotent."""
        self._kill_process()

    async def restart(self) -> None:
        """Stop the server and start it again on the same port and data."""
        await self.stop()
        await self.start()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- plumbing ----------------------------------------------------------------

    async def _before_spawn(self) -> None:
        """Slow preparation that may await (initdb); runs after ``_prepare``."""
        self._prepare()

    def _launch(self) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            # Popen is fork+exec and returns at once: fine to call from a coroutine.
            self._proc = self._spawn(log)
        self._after_spawn(self._proc.pid)

    def _after_spawn(self, pid: int) -> None:
        """Hook: record the pid where a later process can find it."""
        return

    def _check_still_running(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            code = self._proc.returncode
            self._proc = None
            raise DevServerError(
                f"{self._name} exited with status {code} while starting; "
                f"last lines of {self.log_file}:\n{log_tail(self.log_file)}"
            )

    def _target_pid(self) -> int | None:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc.pid
        self._proc = None
        return self._pid_from_file()

    def _exited(self, pid: int) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            return self._proc.poll() is not None
        return not pid_alive(pid)

    async def _stop(self, sig: signal.Signals) -> None:
        pid = self._target_pid()
        if pid is not None:
            os.kill(pid, sig)
            deadline = time.monotonic() + self._stop_timeout_seconds
            while not self._exited(pid):
                if time.monotonic() > deadline:
                    self._kill_process()
                    raise DevServerError(
                        f"{self._name} (pid {pid}) did not stop within "
                        f"{self._stop_timeout_seconds:g} s of {sig.name} and was killed; "
                        f"last lines of {self.log_file}:\n{log_tail(self.log_file)}"
                    )
                await asyncio.sleep(_POLL_SECONDS)
        self._proc = None
        self._state = ServerState.STOPPED
        self._after_stop()

    def _kill_process(self) -> None:
        pid = self._target_pid()
        if pid is not None:
            self._kill_tree(pid)
            if self._proc is not None:
                # SIGKILL cannot be ignored; the wait only reaps.
                self._proc.wait(timeout=self._stop_timeout_seconds)
        self._proc = None
        self._state = ServerState.STOPPED
        self._after_stop()

    def _kill_tree(self, pid: int) -> None:
        """SIGKILL ``pid``; subclasses with worker processes kill those too."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def _after_stop(self) -> None:
        """Hook: remove what only a running server needs."""
        return


def spawn(
    argv: Sequence[str],
    *,
    log: IO[bytes],
    cwd: Path,
    env: Mapping[str, str],
    user: int | None = None,
    group: int | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session (terminal signals do not reach it)."""
    return subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=cwd,
        env=dict(env),
        start_new_session=True,
        user=user,
        group=group,
        extra_groups=[] if user is not None else None,
    )


async def probe_tcp(port: int, request: bytes, *, read_all: bool) -> bytes:
    """Send ``request`` to 127.0.0.1:``port`` and return the reply ("" if refused).

    ``read_all`` reads until the server closes (ZooKeeper's four-letter words);
    otherwise one line is read (Redis).
    """
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), _PROBE_SECONDS
        )
    except (OSError, TimeoutError):
        return b""
    try:
        writer.write(request)
        await writer.drain()
        if read_all:
            return await asyncio.wait_for(reader.read(), _PROBE_SECONDS)
        return await asyncio.wait_for(reader.readline(), _PROBE_SECONDS)
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return b""
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


class PidFileServer(LocalServer):
    """A server that does not write its own pid file: this class writes it (in
    ``_pid_file``) when the process starts, and removes it when it stops."""

    @property
    @abc.abstractmethod
    def _pid_file(self) -> Path:
        """Where the pid is recorded, for later processes to find the server."""

    def _after_spawn(self, pid: int) -> None:
        self._pid_file.write_text(f"{pid}\n")

    def _after_stop(self) -> None:
        self._pid_file.unlink(missing_ok=True)

    def _pid_from_file(self) -> int | None:
        return read_pid_file(self._pid_file, self._marker)
