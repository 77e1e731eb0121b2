"""The local stack's supervisor: a service whose process died is started again, with backoff.

In production the services run under a restart policy (compose ``restart:``, Kubernetes);
locally, `feedctl local up` runs this small daemon (``python -m jobs.localstack.supervise``)
as the ``supervisor`` entry of the state directory, and `feedctl local down` stops it
before anything else. Every second it looks at each service's pid file:

- no pid file: the service was never started by this stack (a healthy one of another
  checkout is reused) or was stopped on purpose, so it is left alone;
- the recorded process is gone: a crash. It is noted in the service's ``restarts.json``
  and the service is started again through `Service.start` (which first kills what the
  dead run left in its session) after a backoff that doubles
  with each crash in a row (1 s, 2 s, 4 s ... capped at 60 s) and resets once the service
  has stayed healthy for 30 s; ``after_healthy`` (topics, buckets) runs once it is healthy;
- the process runs: nothing is done, even when it does not answer (a frozen or busy
  server recovers by itself; killing it would turn a pause into lost work).
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from feedline.cli import stop_on_signals
from feedline.settings import REPO_ROOT, StackSettings, get_stack_settings
from jobs.localstack import restarts
from jobs.localstack.base import Service
from jobs.localstack.process import ManagedProcess
from jobs.localstack.restarts import Backoff

#: The services the daemon watches unless told otherwise (a ``module:function`` taking
#: the stack settings and returning the services).
DEFAULT_SERVICES = "jobs.localstack.stack:services"
#: Seconds between two looks at the pid files.
POLL_S = 1.0
#: Seconds between two health checks of a service that was restarted recently.
HEALTH_EVERY_S = 2.0
#: The daemon's heartbeat must be this fresh for it to count as healthy: generous, as
#: starting a server blocks the loop until the server's command line is visible.
HEARTBEAT_MAX_AGE_S = 120.0
#: Seconds a dying child is given to become a zombie, so that its exit status is read.
EXIT_WAIT_S = 5.0

Say = Callable[[str], object]


def exit_reason(process: ManagedProcess) -> str:
    """Why the recorded process is gone: its exit status when it was this process's child.

    A server started by `feedctl local up` is nobody's child once that command returned,
    so its status is lost; the last line of its log is the best hint then.
    """
    pid = process.recorded_pid()
    if pid is not None:
        waited, status = _reap(pid)
        if waited == pid:
            if os.WIFSIGNALED(status):
                return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
            return f"exited with status {os.WEXITSTATUS(status)}"
    return f"process {pid} gone (exit status unknown; log ends: {_last_line(process)!r})"


def _reap(pid: int, timeout_s: float = EXIT_WAIT_S) -> tuple[int, int]:
    """``waitpid`` for a child that is gone from `ManagedProcess.pid` but may still be exiting.

    A killed process's command line reads empty while the kernel tears it down, before it
    becomes a zombie: a non-blocking wait right then finds nothing yet, so it is repeated
    for a moment. ``(0, 0)`` when ``pid`` is not this process's child or never ended.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            waited, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return 0, 0
        if waited == pid or time.monotonic() >= deadline:
            return waited, status
        time.sleep(0.01)


def _last_line(process: ManagedProcess, limit: int = 160) -> str:
    """The log's last non-empty line, reading only its end (server logs grow large)."""
    try:
        with process.log_file.open("rb") as log:
            log.seek(max(log.seek(0, os.SEEK_END) - 4096, 0))
            lines = log.read().decode(errors="replace").strip().splitlines()
    except FileNotFoundError:
        return ""
    return lines[-1][-limit:] if lines else ""


class Supervisor:
    """Watches services and starts again those whose process died."""

    def __init__(self, services: Sequence[Service], backoff: Backoff | None = None,
                 say: Say = print) -> None:
        self.services = list(services)
        self.backoff = backoff or Backoff()
        self.say = say
        self._awaiting_setup: set[str] = set()
        self._checked_at: dict[str, float] = {}

    def tick(self) -> None:
        """One look at every service; an error with one never stops the others."""
        for svc in self.services:
            try:
                self._watch(svc)
            except Exception as error:  # keep supervising the rest
                self.say(f"{svc.name}: supervisor error: {type(error).__name__}: {error}")

    def _watch(self, svc: Service) -> None:
        process = svc.process
        if process.pid() is not None:
            self._running(svc)
            return
        if not process.pid_file.exists():
            self._awaiting_setup.discard(svc.name)
            return
        with process.locked(wait=False) as held:
            # Someone is starting or stopping it right now; look again next time.
            if not held or process.pid() is not None or not process.pid_file.exists():
                return
            self._restart_when_due(svc)

    def _restart_when_due(self, svc: Service) -> None:
        now = time.time()
        record = restarts.load(svc.home)
        if record.restart_due_at is None:
            reason = exit_reason(svc.process)
            delay = record.crashed(now, reason, self.backoff)
            restarts.save(svc.home, record)
            self.say(f"{svc.name}: died ({reason}); restart in {delay:.1f}s "
                     f"(crash {record.crashes_in_a_row} in a row)")
        if not record.restart_due(now):
            return
        try:
            pid = svc.start()
        except Exception as error:
            record.restart_due_at = None
            delay = record.crashed(now, f"restart failed: {type(error).__name__}: {error}",
                                   self.backoff)
            restarts.save(svc.home, record)
            self.say(f"{svc.name}: {record.last_reason}; next try in {delay:.1f}s")
            return
        record.restarted(now)
        restarts.save(svc.home, record)
        self._awaiting_setup.add(svc.name)
        self.say(f"{svc.name}: restarted as pid {pid} (restart {record.restarts})")

    def _running(self, svc: Service) -> None:
        record = restarts.load(svc.home)
        if record.restart_due_at is not None:  # someone else (`local up`) started it
            record.restart_due_at = None
            restarts.save(svc.home, record)
        if svc.name not in self._awaiting_setup and record.crashes_in_a_row == 0:
            return
        now = time.time()
        if now - self._checked_at.get(svc.name, 0.0) < HEALTH_EVERY_S:
            return
        self._checked_at[svc.name] = now
        healthy = svc.healthy()
        if healthy and svc.name in self._awaiting_setup:
            svc.after_healthy()
            self._awaiting_setup.discard(svc.name)
            self.say(f"{svc.name}: healthy again at {svc.endpoint()}")
        streak = record.crashes_in_a_row
        record.observed(time.time(), healthy, self.backoff)
        restarts.save(svc.home, record)
        if streak and not record.crashes_in_a_row:
            self.say(f"{svc.name}: stable for {self.backoff.stable_s:.0f}s; backoff reset")


class SupervisorService(Service):
    """The supervisor daemon as a process of the stack (pid file, log, heartbeat)."""

    name = "supervisor"
    essential = False

    def __init__(self, settings: StackSettings, *, services: str = DEFAULT_SERVICES,
                 backoff: Backoff | None = None, poll_s: float = POLL_S) -> None:
        super().__init__(settings)
        self.services = services
        self.backoff = backoff or Backoff()
        self.poll_s = poll_s

    @property
    def heartbeat(self) -> Path:
        """Touched by the daemon after each look at the services."""
        return self.home / "heartbeat"

    def endpoint(self) -> str:
        """Where it reports."""
        return f"log: {self.process.log_file}"

    @property
    def settings_file(self) -> Path:
        """The stack's settings as JSON, read by the daemon (and nothing else)."""
        return self.home / "settings.json"

    def prepare(self) -> None:
        """Write the settings the daemon works with: exactly this stack's."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.settings_file.write_text(self.settings.model_dump_json(indent=1) + "\n")

    def command(self) -> tuple[list[str], Mapping[str, str]]:
        """Run this module's entry point on the stack's settings."""
        argv = [sys.executable, "-m", "jobs.localstack.supervise",
                "--settings-file", str(self.settings_file),
                "--heartbeat-file", str(self.heartbeat), "--services", self.services,
                "--poll-s", str(self.poll_s), "--first-backoff-s", str(self.backoff.first_s),
                "--max-backoff-s", str(self.backoff.cap_s),
                "--stable-s", str(self.backoff.stable_s)]
        return argv, {"PYTHONPATH": str(REPO_ROOT)}

    def healthy(self) -> bool:
        """The daemon runs and touched its heartbeat recently."""
        if self.process.pid() is None:
            return False
        try:
            return time.time() - self.heartbeat.stat().st_mtime < HEARTBEAT_MAX_AGE_S
        except FileNotFoundError:
            return False


def _load_services(spec: str, settings: StackSettings) -> list[Service]:
    module, _, function = spec.partition(":")
    factory = getattr(importlib.import_module(module), function)
    return list(factory(settings))


def _say(message: str) -> None:
    print(f"{datetime.now(UTC).isoformat(timespec='seconds')} {message}", flush=True)


def run(argv: Sequence[str] | None = None) -> int:
    """Supervise until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m jobs.localstack.supervise",
                                     description="Restart crashed local-stack services.")
    parser.add_argument("--services", default=DEFAULT_SERVICES,
                        help="module:function returning the services to watch")
    parser.add_argument("--settings-file", type=Path,
                        help="StackSettings as JSON (default: from the environment)")
    parser.add_argument("--heartbeat-file", type=Path, help="touched after each look")
    parser.add_argument("--poll-s", type=float, default=POLL_S)
    parser.add_argument("--first-backoff-s", type=float, default=Backoff.first_s)
    parser.add_argument("--max-backoff-s", type=float, default=Backoff.cap_s)
    parser.add_argument("--stable-s", type=float, default=Backoff.stable_s)
    args = parser.parse_args(argv)
    if args.settings_file:
        settings = StackSettings.model_validate_json(args.settings_file.read_text())
        # The servers it starts get their settings from these, as `up` gave them: a
        # FEEDLINE_* variable of whoever ran `up` must not override them in a restart.
        for key in [k for k in os.environ if k.startswith("FEEDLINE_")]:
            del os.environ[key]
    else:
        settings = get_stack_settings()
    watched = _load_services(args.services, settings)
    backoff = Backoff(args.first_backoff_s, args.max_backoff_s, args.stable_s)
    supervisor = Supervisor(watched, backoff, say=_say)
    stopping = stop_on_signals()
    _say(f"supervisor watching {', '.join(s.name for s in watched)} "
         f"(backoff {backoff.first_s:g}-{backoff.cap_s:g}s)")
    while not stopping.is_set():
        supervisor.tick()
        if args.heartbeat_file is not None:
            args.heartbeat_file.touch()
        stopping.wait(args.poll_s)
    _say("supervisor stopped")
    return 0


if __name__ == "__main__":
    sys.exit(run())
