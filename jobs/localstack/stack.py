"""Start, stop and inspect the whole local stack, with progress per service."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from feedline.settings import REPO_ROOT, StackSettings
from jobs.localstack import restarts
from jobs.localstack.api import ApiService
from jobs.localstack.archiver import ArchiverService
from jobs.localstack.base import Service
from jobs.localstack.cassandra import CassandraService
from jobs.localstack.flink import FlinkJobManagerService, taskmanager_services
from jobs.localstack.gcs import GcsEmulatorService
from jobs.localstack.kafka import KafkaService
from jobs.localstack.media_worker import MediaWorkerService
from jobs.localstack.monitoring import monitoring_services
from jobs.localstack.redis_cluster import (
    check_cluster_url,
    cluster_runs,
    redis_cluster_services,
)
from jobs.localstack.redis_server import RedisGuardsService, RedisService
from jobs.localstack.restarts import RestartRecord
from jobs.localstack.supervise import SupervisorService

Say = Callable[[str], object]


def services(settings: StackSettings, *, every: bool = False) -> list[Service]:
    """The stack's services, in start order (slowest first so their boot overlaps).

    The cache is the single Redis, or with ``redis.cluster`` the local Redis Cluster's
    masters (started also beside the single one with ``local.redis_cluster``). ``every``:
    both kinds, whatever the settings (`down` stops whatever an earlier `up` started).
    """
    single = every or not settings.redis.cluster
    cluster = every or cluster_runs(settings)
    return [
        CassandraService(settings),
        KafkaService(settings),
        *([RedisService(settings)] if single else []),
        *(redis_cluster_services(settings) if cluster else []),
        RedisGuardsService(settings),
        GcsEmulatorService(settings),
        FlinkJobManagerService(settings),
        *taskmanager_services(settings),
        ApiService(settings),
        ArchiverService(settings),  # it waits for the topics and bucket
        MediaWorkerService(settings),  # a helper too: after every server is healthy
        *monitoring_services(settings),  # Prometheus and its exporters
    ]


class StackError(RuntimeError):
    """A service failed to start or to become healthy."""


def ensure_jars(settings: StackSettings, say: Say) -> None:
    """Fetch the JVM pieces with Maven (infra/maven/pom.xml) when any are missing."""
    jars = settings.local.state_dir / "jars"
    if all(any((jars / c).glob("*.jar"))
           for c in ("kafka", "cassandra", "flink", "flink-metrics", "jmx-exporter")):
        return
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("Maven (mvn) is required to fetch the Kafka/Cassandra/Flink jars")
    say("jars       fetching Kafka, Cassandra and the Flink Kafka connector and metrics reporter "
        "with Maven ...")
    started = time.monotonic()
    result = subprocess.run(
        [mvn, "-q", "-B", "-f", str(REPO_ROOT / "infra" / "maven" / "pom.xml"), "package",
         f"-Djars.dir={jars}"],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise StackError("maven failed to fetch the jars (`make jars` shows why):\n"
                         f"{result.stdout[-3000:]}{result.stderr[-3000:]}")
    say(f"jars       ready in {time.monotonic() - started:.1f}s")


@dataclass
class ServiceStatus:
    """What `status` reports for one service."""

    name: str
    pid: int | None
    healthy: bool
    endpoint: str
    essential: bool = True
    restarts: RestartRecord = field(default_factory=RestartRecord)
    """Restarts by the supervisor (or `up`) since the service was last started by `up`."""

    @property
    def state(self) -> str:
        """healthy, UNHEALTHY (running but not answering) or stopped."""
        return "healthy" if self.healthy else ("UNHEALTHY" if self.pid else "stopped")

    def line(self) -> str:
        """One aligned line for the terminal."""
        pid = str(self.pid) if self.pid else "-"
        line = (f"{self.name:<20} {self.state:<10} pid {pid:<8} "
                f"restarts {self.restarts.restarts:<3} {self.endpoint}")
        if self.restarts.last_restart_at:
            line += f"\n{'':<20} last restart {self.restarts.last_restart_at}: " \
                    f"{self.restarts.last_reason}"
        return line


def status(settings: StackSettings) -> list[ServiceStatus]:
    """Health of every service, checked through its own protocol, with its restarts."""
    out = []
    for svc in services(settings):
        pid = svc.process.pid()
        out.append(ServiceStatus(svc.name, pid, svc.healthy(), svc.endpoint(), svc.essential,
                                 restarts.load(svc.home)))
    return out


def supervisor_status(settings: StackSettings) -> ServiceStatus:
    """Whether the supervisor runs (`status` of the stack leaves it out of "healthy")."""
    svc = SupervisorService(settings)
    return ServiceStatus(svc.name, svc.process.pid(), svc.healthy(), svc.endpoint(),
                         svc.essential)


def up(settings: StackSettings, say: Say = print,
       on_ready: Callable[[str], object] | None = None) -> float:
    """Start whatever is not running, wait until all are healthy, then set them up.

    Idempotent: healthy services are left alone. ``on_ready(name)`` is called as each
    service is healthy and set up (a progress bar's step). Returns the seconds it took.
    """
    began = time.monotonic()
    problem = check_cluster_url(settings)
    if problem:
        raise StackError(problem)
    settings.local.state_dir.mkdir(parents=True, exist_ok=True)
    ensure_jars(settings, say)
    all_services = services(settings)
    # The servers first, then the helpers (the archiver) once every server is healthy: a
    # helper started with them found Kafka still recovering its logs and exited.
    for phase in ([s for s in all_services if s.essential],
                  [s for s in all_services if not s.essential]):
        start_services(phase, settings, say, on_ready)
    start_supervisor(settings, say)
    took = time.monotonic() - began
    say(f"stack up in {took:.1f}s")
    return took


def start_services(group: list[Service], settings: StackSettings, say: Say = print,
                   on_ready: Callable[[str], object] | None = None) -> None:
    """Start those of ``group`` that do not run, together; wait for each and set it up."""
    started: dict[str, float] = {}
    for svc in group:
        if _start_unless_running(svc):
            started[svc.name] = time.monotonic()
            say(f"{svc.name:<20} starting (log: {svc.process.log_file})")
    for svc in group:
        wait_healthy(svc, settings.local.start_timeout_s, say, started.get(svc.name))
        svc.after_healthy()
        if on_ready is not None:
            on_ready(svc.name)


def _start_unless_running(svc: Service) -> bool:
    """Start a service that is neither running nor reusable; True when it was started."""
    # Under the service's lock: the supervisor may be restarting the same one.
    with svc.process.locked():
        if svc.process.pid() is not None:
            return False
        # A server this stack started that has died is restarted even if its peers still
        # report it (a killed TaskManager stays listed until its heartbeat times out); a
        # healthy one this stack does not own (another checkout's) is reused.
        crashed = svc.process.exited_early()
        if not crashed and svc.healthy():
            return False
        svc.start()
        if crashed:
            _note_restart(svc)
        return True


def _note_restart(svc: Service) -> None:
    """Count a restart of a dead service by `up` (the supervisor was not running, or lost)."""
    record = restarts.load(svc.home)
    if record.restart_due_at is None:  # the supervisor had not noted this death
        record.last_reason = "found dead by `feedctl local up`"
    record.restarted(time.time())
    restarts.save(svc.home, record)


def start_supervisor(settings: StackSettings, say: Say) -> None:
    """Start the supervisor unless it runs (then it is left alone)."""
    supervisor = SupervisorService(settings)
    with supervisor.process.locked():
        pid = supervisor.process.pid()
        if pid is not None:
            say(f"{supervisor.name:<20} already running (pid {pid})")
            return
        began = time.monotonic()
        pid = supervisor.start()
        # Once `up` returns, supervision is in effect: wait for the first look.
        wait_healthy(supervisor, settings.local.start_timeout_s, lambda _: None, began)
        say(f"{supervisor.name:<20} running (pid {pid}): crashed services restart by "
            f"themselves (log: {supervisor.process.log_file})")


def supervised_names(settings: StackSettings) -> list[str]:
    """The services the running supervisor watches (none when it does not run).

    Those of the settings it was started with: an `up` with other settings (e.g. the tests'
    Redis Cluster) may have added some it does not know.
    """
    supervisor = SupervisorService(settings)
    if supervisor.process.pid() is None:
        return []
    try:
        started_with = StackSettings.model_validate_json(supervisor.settings_file.read_text())
    except (OSError, ValueError):
        return []
    return [svc.name for svc in services(started_with)]


def stop_supervisor(settings: StackSettings, say: Say = print) -> bool:
    """Stop the supervisor (first, so that it does not start again what is being stopped)."""
    supervisor = SupervisorService(settings)
    pid = supervisor.process.pid()
    if supervisor.process.stop():
        say(f"{supervisor.name:<20} stopped (pid {pid})")
        return True
    return False


def wait_healthy(svc: Service, timeout_s: float, say: Say, started: float | None) -> None:
    """Wait until ``svc`` is healthy.

    StackError (with its log's tail) when it exits first or is not healthy within
    ``timeout_s``; ``started`` is when this caller started it (None: it was running).
    """
    deadline = time.monotonic() + timeout_s
    last_note = time.monotonic()
    while not svc.healthy():
        if svc.process.exited_early():
            raise StackError(f"{svc.name} exited during start-up (log: {svc.process.log_file}):"
                             f"\n{svc.process.log_tail(40)}")
        if time.monotonic() > deadline:
            raise StackError(
                f"{svc.name} not healthy after {timeout_s:.0f}s (log: {svc.process.log_file}):"
                f"\n{svc.process.log_tail(40)}"
            )
        if time.monotonic() - last_note > 10:
            say(f"{svc.name:<20} still waiting ({time.monotonic() - (started or last_note):.0f}s)")
            last_note = time.monotonic()
        time.sleep(0.5)
    if started is None:
        say(f"{svc.name:<20} already healthy at {svc.endpoint()}")
    else:
        say(f"{svc.name:<20} healthy in {time.monotonic() - started:.1f}s at {svc.endpoint()}")


def down(settings: StackSettings, say: Say = print) -> int:
    """Stop the supervisor, then exactly the processes `up` started, in reverse order.

    Processes are found by their recorded pids; restart counts start afresh with `up`.
    """
    stop_supervisor(settings, say)
    stopped = 0
    for svc in reversed(services(settings, every=True)):
        pid = svc.process.pid()
        restarts.forget(svc.home)
        if svc.process.stop():
            stopped += 1
            say(f"{svc.name:<20} stopped (pid {pid})")
        else:
            say(f"{svc.name:<20} was not running")
    return stopped

