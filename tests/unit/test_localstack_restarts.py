"""Restart bookkeeping and backoff of the local stack's supervisor (no services needed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from feedline.settings import LocalStackSettings, StackSettings
from jobs.localstack import restarts, supervise
from jobs.localstack.base import Service
from jobs.localstack.process import ManagedProcess, session_leftovers
from jobs.localstack.restarts import Backoff, RestartRecord
from jobs.localstack.supervise import Supervisor, SupervisorService
from tests.support.waiting import eventually


def test_backoff_doubles_per_crash_in_a_row_and_is_capped() -> None:
    backoff = Backoff(first_s=1, cap_s=60)
    assert [backoff.delay_s(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff.delay_s(10_000) == 60


def test_a_death_is_noted_once_and_restarted_only_after_its_backoff() -> None:
    backoff = Backoff(first_s=2, cap_s=60)
    record = RestartRecord()
    assert record.crashed(100.0, "killed by SIGKILL", backoff) == 2
    # The same death seen again on the next look is not a second crash.
    assert record.crashed(101.0, "process gone", backoff) == 1
    assert record.crashes_in_a_row == 1
    assert record.last_reason == "killed by SIGKILL"
    assert not record.restart_due(101.9)
    assert record.restart_due(102.0)
    record.restarted(102.0)
    assert record.restarts == 1
    assert record.last_restart_at == "1970-01-01T00:01:42+00:00"
    assert not record.restart_due(1e9)


def test_a_crash_loop_waits_longer_each_time_until_the_cap() -> None:
    backoff = Backoff(first_s=1, cap_s=8, stable_s=30)
    record = RestartRecord()
    now, waits = 0.0, []
    for _ in range(6):
        waits.append(record.crashed(now, "exited with status 1", backoff))
        now += waits[-1]
        record.restarted(now)
        record.observed(now + 0.5, healthy=False, backoff=backoff)
        now += 1
    assert waits == [1, 2, 4, 8, 8, 8]
    assert record.restarts == 6 and record.crashes_in_a_row == 6


def test_the_streak_resets_only_after_a_healthy_run_of_stable_s() -> None:
    backoff = Backoff(first_s=1, cap_s=60, stable_s=30)
    record = RestartRecord()
    for at in (0.0, 10.0, 20.0):
        record.crashed(at, "killed", backoff)
        record.restarted(at + 1)
    assert record.crashes_in_a_row == 3
    record.observed(100.0, healthy=True, backoff=backoff)
    record.observed(125.0, healthy=True, backoff=backoff)
    record.observed(126.0, healthy=False, backoff=backoff)  # a break restarts the clock
    record.observed(127.0, healthy=True, backoff=backoff)
    record.observed(150.0, healthy=True, backoff=backoff)
    assert record.crashes_in_a_row == 3
    record.observed(157.0, healthy=True, backoff=backoff)
    assert record.crashes_in_a_row == 0
    assert record.crashed(160.0, "killed", backoff) == 1  # back to the first wait
    assert record.restarts == 3  # the count itself is never reset


def test_record_round_trips_and_a_damaged_file_reads_as_empty(tmp_path: Path) -> None:
    record = RestartRecord()
    record.crashed(5.0, "killed by SIGKILL", Backoff())
    record.restarted(6.0)
    restarts.save(tmp_path, record)
    assert restarts.load(tmp_path) == record
    (tmp_path / restarts.RESTARTS_FILE).write_text("{not json")
    assert restarts.load(tmp_path) == RestartRecord()
    (tmp_path / restarts.RESTARTS_FILE).write_text('{"restarts": "x", "extra": 1}')
    assert isinstance(restarts.load(tmp_path), RestartRecord)
    restarts.forget(tmp_path)
    assert restarts.load(tmp_path) == RestartRecord()


class _Sleeper(Service):
    """A real process that sleeps; 'healthy' while it runs."""

    name = "sleeper"

    def endpoint(self) -> str:
        return "-"

    def prepare(self) -> None:
        pass

    def command(self) -> tuple[list[str], Mapping[str, str]]:
        return [sys.executable, "-c", "import time; time.sleep(120)", str(self.home)], {}

    def healthy(self) -> bool:
        return self.process.pid() is not None


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[_Sleeper]:
    svc = _Sleeper(StackSettings(local=LocalStackSettings(state_dir=tmp_path)))
    yield svc
    svc.process.stop(timeout_s=5)


def _kill(svc: Service, pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    eventually(lambda: svc.process.pid() is None, "the killed process to be gone", every_s=0.02)


def test_supervisor_restarts_a_killed_process_and_records_why(sleeper: _Sleeper) -> None:
    said: list[str] = []
    supervisor = Supervisor([sleeper], Backoff(first_s=0, cap_s=0), say=said.append)
    first = sleeper.start()
    supervisor.tick()  # running: nothing to do
    assert restarts.load(sleeper.home) == RestartRecord()
    _kill(sleeper, first)
    supervisor.tick()  # this test process is the parent: the exit status is known
    second = sleeper.process.pid()
    assert second is not None and second != first
    record = restarts.load(sleeper.home)
    assert (record.restarts, record.crashes_in_a_row) == (1, 1)
    assert record.last_reason == "killed by SIGKILL"
    assert any("restarted as pid" in line for line in said)


def test_supervisor_leaves_alone_what_was_stopped_on_purpose(sleeper: _Sleeper) -> None:
    supervisor = Supervisor([sleeper], Backoff(first_s=0, cap_s=0), say=lambda _: None)
    sleeper.start()
    assert sleeper.process.stop(timeout_s=5)
    supervisor.tick()
    assert sleeper.process.pid() is None
    assert restarts.load(sleeper.home).restarts == 0


def test_supervisor_waits_for_the_backoff(sleeper: _Sleeper) -> None:
    supervisor = Supervisor([sleeper], Backoff(first_s=3600), say=lambda _: None)
    _kill(sleeper, sleeper.start())
    supervisor.tick()
    assert sleeper.process.pid() is None
    record = restarts.load(sleeper.home)
    assert record.restarts == 0 and record.restart_due_at is not None


def test_the_daemon_gets_exactly_the_stack_settings(tmp_path: Path) -> None:
    # Not the environment: a caller's FEEDLINE_* variables must not redirect the daemon.
    settings = StackSettings(local=LocalStackSettings(state_dir=tmp_path, kafka_heap="300m"))
    daemon = SupervisorService(settings)
    daemon.prepare()
    assert StackSettings.model_validate_json(daemon.settings_file.read_text()) == settings
    argv, _ = daemon.command()
    assert argv[argv.index("--settings-file") + 1] == str(daemon.settings_file)


def test_a_restart_first_kills_what_the_dead_server_left_running(tmp_path: Path) -> None:
    # Like uvicorn's workers, which keep serving the port after their parent is killed.
    proc = ManagedProcess("forker", tmp_path / "forker", "feedline-test-forker")
    child_pid_file = tmp_path / "child.pid"
    script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        f"open({str(child_pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(120)\n"
    )
    argv = [sys.executable, "-c", script, "feedline-test-forker"]
    leader = proc.start(argv)
    try:
        eventually(child_pid_file.exists, "the server to fork its child", every_s=0.05)
        child = int(child_pid_file.read_text())
        os.kill(leader, signal.SIGKILL)
        eventually(lambda: proc.pid() is None, "the leader to be gone", every_s=0.02)
        assert session_leftovers(leader) == [child]
        child_pid_file.unlink()
        proc.start(argv)
        assert session_leftovers(leader) == []
        assert not _alive(child)
        assert "killed 1 process(es) left by the dead pid" in proc.log_file.read_text()
    finally:
        proc.stop(timeout_s=5)


def test_a_live_recycled_pid_is_never_taken_for_a_dead_leader() -> None:
    assert session_leftovers(os.getpid()) == []  # alive: whatever its session holds stays


def _alive(pid: int) -> bool:
    fields = Path(f"/proc/{pid}/stat")
    return fields.exists() and fields.read_text().rsplit(") ", 1)[1][:1] != "Z"


def test_the_exit_status_of_a_child_still_exiting_is_waited_for() -> None:
    # A killed server reads as gone (empty command line) a moment before it is a zombie:
    # the status must still be read then, not reported unknown.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        threading.Timer(0.3, child.kill).start()
        waited, status = supervise._reap(child.pid, timeout_s=30)
        assert waited == child.pid
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        child.returncode = -signal.SIGKILL  # reaped above: Popen must not wait again
    finally:
        if child.returncode is None:
            child.kill()
            child.wait()


def test_a_process_that_is_not_a_child_has_no_status_to_wait_for() -> None:
    assert supervise._reap(1, timeout_s=30) == (0, 0)
