"""The supervisor daemon restarts a killed service by itself, with the restart on record.

The mechanism is exercised on a throwaway HTTP server of its own (own state directory and
port) so that it can be killed freely; on the shared stack, only the GCS emulator (cheap,
quickly back) is killed, once, and `feedctl local status --json` must show the restart.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from feedline.settings import LocalStackSettings, StackSettings
from jobs.localstack import restarts
from jobs.localstack import stack as local_stack
from jobs.localstack.base import Service, free_port
from jobs.localstack.gcs import GcsEmulatorService
from jobs.localstack.restarts import Backoff
from jobs.localstack.supervise import SupervisorService
from tests.support.waiting import eventually

PORT_FILE = "toy-http.port"


class ToyHttpService(Service):
    """``python -m http.server`` on a free loopback port: a service that is cheap to kill."""

    name = "toy-http"

    @property
    def port(self) -> int:
        """Chosen by the test, kept in the state directory for the supervisor to read."""
        return int((self.settings.local.state_dir / PORT_FILE).read_text())

    def endpoint(self) -> str:
        """Its URL."""
        return f"http://127.0.0.1:{self.port}"

    def prepare(self) -> None:
        """A page to serve."""
        (self.home / "index.html").write_text("toy\n")

    def command(self) -> tuple[list[str], Mapping[str, str]]:
        """Serve the service's folder (the folder is the command-line marker)."""
        return [sys.executable, "-m", "http.server", str(self.port), "--bind", "127.0.0.1",
                "--directory", str(self.home)], {}

    def healthy(self) -> bool:
        """GET / answers 200."""
        try:
            with urllib.request.urlopen(self.endpoint(), timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False


def toy_services(settings: StackSettings) -> list[Service]:
    """What the test's supervisor watches (``--services``)."""
    return [ToyHttpService(settings)]


def gcs_only(settings: StackSettings) -> list[Service]:
    """What a supervisor started by this test watches on the shared stack."""
    return [GcsEmulatorService(settings)]


def _kill(svc: Service) -> int:
    pid = svc.process.pid()
    assert pid is not None, f"{svc.name} is not running"
    os.kill(pid, signal.SIGKILL)
    return pid


def _back(svc: Service, old_pid: int) -> bool:
    pid = svc.process.pid()
    return pid is not None and pid != old_pid and svc.healthy()


Toy = tuple[ToyHttpService, SupervisorService]


@pytest.fixture
def toy(tmp_path: Path) -> Iterator[Toy]:
    settings = StackSettings(local=LocalStackSettings(state_dir=tmp_path))
    (tmp_path / PORT_FILE).write_text(f"{free_port()}\n")
    service = ToyHttpService(settings)
    supervisor = SupervisorService(settings, services=f"{__name__}:toy_services",
                                   backoff=Backoff(first_s=0.2, cap_s=2.0, stable_s=3600),
                                   poll_s=0.2)
    try:
        service.start()
        eventually(service.healthy, "the toy server", detail=service.process.log_tail)
        supervisor.start()
        eventually(supervisor.healthy, "the supervisor's first look",
                   detail=supervisor.process.log_tail)
        yield service, supervisor
    finally:
        supervisor.process.stop(timeout_s=10)  # first, as `feedctl local down` does
        service.process.stop(timeout_s=10)


def test_killed_service_comes_back_by_itself_with_restarts_on_record(toy: Toy) -> None:
    service, supervisor = toy
    first = _kill(service)
    eventually(lambda: _back(service, first), "the killed server to be restarted and healthy",
               detail=supervisor.process.log_tail)
    record = restarts.load(service.home)
    assert record.restarts >= 1 and record.last_restart_at is not None
    assert record.last_reason is not None and str(first) in record.last_reason

    # The restarted server is the supervisor's child: now its exit status is known.
    second = _kill(service)
    eventually(lambda: _back(service, second), "the second restart",
               detail=supervisor.process.log_tail)
    record = restarts.load(service.home)
    assert record.restarts >= 2
    assert record.last_reason == "killed by SIGKILL"
    assert record.crashes_in_a_row >= 2  # not yet stable: the backoff has grown


def test_a_crash_loop_backs_off_instead_of_spinning(toy: Toy) -> None:
    service, supervisor = toy
    # From now on the server cannot start: its port file names a port that is taken.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        (service.settings.local.state_dir / PORT_FILE).write_text(
            f"{taken.getsockname()[1]}\n")
        _kill(service)
        eventually(lambda: restarts.load(service.home).crashes_in_a_row >= 6,
                   "six crashes in a row", detail=supervisor.process.log_tail)
    record = restarts.load(service.home)
    # Each crash of the streak was given a longer wait than the one before, up to the cap.
    waits = [(int(n), float(s)) for s, n in re.findall(
        r"restart in ([0-9.]+)s \(crash (\d+) in a row\)", supervisor.process.log_file.read_text())]
    assert [w for _, w in waits[:6]] == [0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    assert [n for n, _ in waits[:6]] == [1, 2, 3, 4, 5, 6]
    # One restart per crash: never more starts than deaths.
    assert record.restarts <= record.crashes_in_a_row


def test_a_service_stopped_on_purpose_stays_stopped(toy: Toy) -> None:
    service, supervisor = toy
    assert service.process.stop(timeout_s=10)
    # Two full looks of the supervisor after the stop (its heartbeat moved twice).
    for _ in range(2):
        seen = supervisor.heartbeat.stat().st_mtime_ns
        eventually(lambda: supervisor.heartbeat.stat().st_mtime_ns > seen,  # noqa: B023
                   "the supervisor to look again", every_s=0.1)
    assert service.process.pid() is None
    assert restarts.load(service.home).restarts == 0


def test_shared_stack_gcs_killed_comes_back_and_status_shows_the_restart(stack) -> None:
    gcs = GcsEmulatorService(stack)
    if gcs.process.pid() is None:
        pytest.skip("the GCS emulator is not this stack's process (reused from elsewhere)")
    ours = None
    if not local_stack.supervisor_status(stack).healthy:
        # No supervisor yet: run one that watches only the emulator, and stop it afterwards.
        ours = SupervisorService(stack, services=f"{__name__}:gcs_only")
        ours.start()
        eventually(ours.healthy, "the supervisor", detail=ours.process.log_tail)
    try:
        before = restarts.load(gcs.home).restarts
        old = _kill(gcs)
        eventually(lambda: _back(gcs, old), "the GCS emulator back by itself",
                   detail=lambda: SupervisorService(stack).process.log_tail())
        out = subprocess.run(
            [sys.executable, "-m", "jobs.feedctl.main", "local", "status", "--json"],
            capture_output=True, text=True, check=False)
        doc = json.loads(out.stdout)
        row = next(s for s in doc["services"] if s["name"] == "gcs")
        assert row["healthy"] and row["restarts"] >= max(before + 1, 1)
        assert row["last_restart_at"] and row["last_restart_reason"]
        assert doc["supervisor"]["running"] is True
    finally:
        if ours is not None:
            ours.process.stop(timeout_s=10)


def test_up_starts_one_supervisor_and_down_stops_it_before_the_services(tmp_path: Path) -> None:
    # A stack of its own with no service running: only the supervisor's start and stop.
    settings = StackSettings(local=LocalStackSettings(state_dir=tmp_path))
    said: list[str] = []
    try:
        local_stack.start_supervisor(settings, said.append)
        first = local_stack.supervisor_status(settings).pid
        local_stack.start_supervisor(settings, said.append)  # idempotent
        assert first is not None and local_stack.supervisor_status(settings).pid == first
        assert "already running" in said[-1]
        eventually(lambda: local_stack.supervisor_status(settings).healthy, "the supervisor",
                   detail=SupervisorService(settings).process.log_tail)
        said.clear()
        local_stack.down(settings, say=said.append)
        assert said[0].startswith("supervisor") and "stopped" in said[0]
        assert all("was not running" in line for line in said[1:])
        assert local_stack.supervisor_status(settings).pid is None
    finally:
        local_stack.stop_supervisor(settings)
