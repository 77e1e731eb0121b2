from __future__ import annotations

import sys
from pathlib import Path

from jobs.localstack.process import ManagedProcess
from tests.support.waiting import eventually


def _sleeper(tmp_path: Path, marker: str) -> ManagedProcess:
    return ManagedProcess("sleeper", tmp_path / "sleeper", marker)


def test_start_records_pid_and_stop_kills_it(tmp_path: Path) -> None:
    proc = _sleeper(tmp_path, "feedline-test-marker-1")
    pid = proc.start(
        [sys.executable, "-c", "import time; time.sleep(60)", "feedline-test-marker-1"]
    )
    assert proc.pid() == pid
    assert proc.stop(timeout_s=5) is True
    assert proc.pid() is None
    assert not proc.pid_file.exists()
    assert proc.stop() is False  # nothing left to stop


def test_pid_of_another_program_is_never_claimed(tmp_path: Path) -> None:
    proc = _sleeper(tmp_path, "marker-that-this-process-lacks")
    proc.pid_file.parent.mkdir(parents=True)
    proc.pid_file.write_text("1\n")  # pid 1 is alive but is not ours
    assert proc.pid() is None
    assert proc.stop() is False


def test_early_exit_is_detected_and_log_kept(tmp_path: Path) -> None:
    proc = _sleeper(tmp_path, "feedline-test-marker-2")
    proc.start(
        [sys.executable, "-c", "print('boom'); raise SystemExit(3)", "feedline-test-marker-2"]
    )
    eventually(proc.exited_early, "the process to exit", every_s=0.05)
    assert "boom" in proc.log_tail()


def test_stop_also_stops_the_children_the_server_forked(tmp_path: Path) -> None:
    proc = _sleeper(tmp_path, "feedline-test-marker-3")
    child_pid_file = tmp_path / "child.pid"
    script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(child_pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    proc.start([sys.executable, "-c", script, "feedline-test-marker-3"])
    eventually(child_pid_file.exists, "the server to fork its child", every_s=0.05)
    child = int(child_pid_file.read_text())
    assert Path(f"/proc/{child}").exists()
    assert proc.stop(timeout_s=5) is True
    eventually(lambda: not _alive(child), "the stopped server's child to exit", every_s=0.05)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"
