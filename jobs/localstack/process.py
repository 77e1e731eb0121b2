"""One background server process of the local stack, tracked by a pid file.

The stack starts real servers as plain child processes (there is no Docker engine on the
build machines). Each one gets a folder under the stack's state directory holding its
pid file and log; `stop` signals exactly the pid it recorded, after checking that the
pid still belongs to that server (its command line carries a marker), so a recycled pid
is never killed by mistake. Whoever starts or stops a server holds its folder's lock
(`locked`), so `feedctl local up`, `stop` and the supervisor never race on one server.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


def _signal_group(pid: int, sig: int) -> None:
    """Signal the process group led by ``pid``; fall back to the pid alone."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def _stat_fields(pid: int) -> list[str] | None:
    """``/proc/PID/stat`` after the command name: state, ppid, pgrp, session, ..."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return None


def _running(pid: int) -> bool:
    """True for a live process that is not exiting (an exiting one has no command line)."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    try:
        return bool(Path(f"/proc/{pid}/cmdline").read_bytes())
    except (FileNotFoundError, ProcessLookupError):
        return False


def session_leftovers(leader: int) -> list[int]:
    """Live processes still in the session (and group) that dead ``leader`` started.

    A server's helpers outlive it when it is killed (uvicorn's workers keep its port,
    PyFlink's workers keep memory). While any of them lives, the kernel does not hand
    ``leader``'s number to a new process, so they are found without a marker; a running
    leader (a recycled pid, or the server itself) means there are no leftovers to take.
    """
    if _running(leader):
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == leader:
            continue
        fields = _stat_fields(int(entry.name))
        if fields and fields[0] != "Z" and fields[2] == fields[3] == str(leader):
            found.append(int(entry.name))
    return found


@dataclass(frozen=True)
class ManagedProcess:
    """A server process owned by the local stack."""

    name: str
    """Service name; also the folder name under the state directory."""
    home: Path
    """The service's folder: pid file, logs, data."""
    marker: str
    """A string that appears in the process's command line and nowhere else."""

    @property
    def pid_file(self) -> Path:
        """Where the pid of the running process is recorded."""
        return self.home / "pid"

    @property
    def log_file(self) -> Path:
        """Standard output and error of the process."""
        return self.home / "logs" / "console.log"

    @property
    def lock_file(self) -> Path:
        """Held while the process is being started or stopped."""
        return self.home / "start.lock"

    @contextlib.contextmanager
    def locked(self, *, wait: bool = True) -> Iterator[bool]:
        """Hold the start/stop lock; yields False (lock not held) when busy and not ``wait``."""
        self.home.mkdir(parents=True, exist_ok=True)
        with self.lock_file.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def recorded_pid(self) -> int | None:
        """The pid in the pid file, alive or not."""
        try:
            return int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def pid(self) -> int | None:
        """The pid of the running process, or None when it is not running."""
        pid = self.recorded_pid()
        if pid is None:
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            status = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]
        except (FileNotFoundError, IndexError, ProcessLookupError):
            return None
        if status == "Z" or self.marker.encode() not in cmdline:
            return None
        return pid

    def kill_leftovers(self, timeout_s: float = 10.0) -> int:
        """SIGKILL what the dead recorded process left running; returns how many."""
        leader = self.recorded_pid()
        if leader is None or self.pid() is not None:
            return 0
        leftovers = session_leftovers(leader)
        for pid in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout_s
        while session_leftovers(leader) and time.monotonic() < deadline:
            time.sleep(0.05)
        return len(leftovers)

    def start(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        exec_timeout_s: float = 30.0,
    ) -> int:
        """Start the process detached from the caller's session and record its pid.

        Returns once the server's own command line is visible (or the process ended).
        What an earlier, dead run left behind (see `session_leftovers`) is killed first.
        """
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        leftovers = self.kill_leftovers()
        full_env = dict(os.environ)
        full_env.update(env or {})
        with self.log_file.open("ab") as log:
            if leftovers:
                log.write(f"\n--- killed {leftovers} process(es) left by the dead pid "
                          f"{self.recorded_pid()}".encode())
            log.write(f"\n--- start {time.strftime('%Y-%m-%dT%H:%M:%S%z')}: {argv[0]}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=full_env,
                cwd=cwd or self.home,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        # Until the child has exec'd (a launcher script may exec the JVM a moment later),
        # its command line is not yet the server's: wait so pid() means "running".
        deadline = time.monotonic() + exec_timeout_s
        while self.pid() is None and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        return proc.pid

    def exited_early(self) -> bool:
        """True when a pid was recorded but that process is gone."""
        return self.pid_file.exists() and self.pid() is None

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop the process (SIGTERM, then SIGKILL after ``timeout_s``).

        Returns True when a running process was stopped, False when none was running.
        The pid file goes too, under the lock: a supervisor never takes the stopped
        process for a crashed one.
        """
        if not self.pid_file.exists():
            return False
        with self.locked():
            return self._stop(timeout_s)

    def _stop(self, timeout_s: float) -> bool:
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        # The server leads its own process group (start_new_session): signal the group,
        # so helpers it forked (PyFlink's Python workers under the TaskManager) stop too.
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.pid() is None:
                break
            time.sleep(0.2)
        else:
            _signal_group(pid, signal.SIGKILL)
            while self.pid() is not None:
                time.sleep(0.1)
        _signal_group(pid, signal.SIGKILL)  # children that ignored SIGTERM
        self.pid_file.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the process's console log, for error messages."""
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log yet)"
