from __future__ import annotations

import sys
import time
from pathlib import Path

from jobs.localstack.process import ManagedProcess


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
    deadline = time.monotonic() + 10
    while not proc.exited_early() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.exited_early()
    assert "boom" in proc.log_tail()
