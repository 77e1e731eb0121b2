"""A standalone Flink cluster from the PyFlink pip package (JobManager + one TaskManager)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from feedline.settings import StackSettings
from jobs.localstack.base import Service


def flink_home() -> Path:
    """FLINK_HOME of the pip-installed PyFlink (a full Flink distribution)."""
    import pyflink

    return Path(pyflink.__file__).resolve().parent


def _set(tree: dict[str, Any], dotted: str, value: object) -> None:
    """Set ``a.b.c`` in a nested mapping, replacing any flat or nested spelling."""
    tree.pop(dotted, None)
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def flink_conf_dir(settings: StackSettings) -> Path:
    """Where the local cluster's generated configuration lives."""
    return settings.local.state_dir / "flink" / "conf"


def write_flink_conf(settings: StackSettings) -> Path:
    """Generate config.yaml (and copy the log configs) for the local cluster."""
    home = flink_home()
    conf_dir = flink_conf_dir(settings)
    conf_dir.mkdir(parents=True, exist_ok=True)
    tree = yaml.safe_load((home / "conf" / "config.yaml").read_text()) or {}
    state = settings.local.state_dir / "flink"
    rest = urllib.parse.urlsplit(settings.flink.rest_url)
    overrides: dict[str, object] = {
        "jobmanager.bind-host": "127.0.0.1",
        "jobmanager.rpc.address": "127.0.0.1",
        "jobmanager.memory.process.size": settings.local.flink_jobmanager_memory,
        "taskmanager.bind-host": "127.0.0.1",
        "taskmanager.host": "127.0.0.1",
        "taskmanager.memory.process.size": settings.local.flink_taskmanager_memory,
        # Every deployment loads the Kafka connector and planner-generated classes in its own
        # class loader; 256 MB (the default) ran out over a full test run of redeployments.
        "taskmanager.memory.jvm-metaspace.size": settings.local.flink_taskmanager_metaspace,
        "taskmanager.memory.task.off-heap.size": settings.local.flink_taskmanager_task_off_heap,
        "taskmanager.numberOfTaskSlots": settings.flink.task_slots,
        # Spread a job's slots over the TaskManagers rather than filling one first.
        "taskmanager.load-balance.mode": "SLOTS",
        "parallelism.default": settings.flink.parallelism,
        "rest.address": rest.hostname or "127.0.0.1",
        "rest.bind-address": rest.hostname or "127.0.0.1",
        "rest.port": rest.port or 8081,
        "jobmanager.rpc.port": settings.local.flink_rpc_port,
        "blob.server.port": str(settings.local.flink_blob_port),
        "execution.checkpointing.dir": f"file://{state / 'checkpoints'}",
        "execution.checkpointing.savepoint-dir": f"file://{state / 'savepoints'}",
        "state.backend.type": "hashmap",
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
        # Operator metrics read through REST (benchmarks, tests waiting on progress) are
        # cached for this long: the default 10 s made a benchmark phase's end known only
        # to within 10 s.
        "metrics.fetcher.update-interval": "500",
        # Notice a dead TaskManager within seconds, not the default 50 s.
        "heartbeat.interval": "2000",
        "heartbeat.timeout": "10000",
        "io.tmp.dirs": str(state / "tmp"),
        "web.tmpdir": str(state / "web"),
    }
    if thread_mode(settings):
        # PEMJA's classes come from the cluster's class path (flink-python in its lib
        # folder, see install_cluster_lib), never from a job's: one native load per JVM.
        overrides["classloader.parent-first-patterns.additional"] = "pemja."
    for key, value in overrides.items():
        _set(tree, key, value)
    _replace(conf_dir / "config.yaml", yaml.safe_dump(tree, sort_keys=True))
    for name in ("log4j-console.properties", "log4j-cli.properties", "log4j.properties"):
        _replace(conf_dir / name, (home / "conf" / name).read_text())
    (state / "tmp").mkdir(parents=True, exist_ok=True)
    return conf_dir


def _replace(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all.

    Clients started side by side each rewrite the configuration; one must never read a
    file another is halfway through.
    """
    descriptor, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(partial, 0o644)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def java_opts(settings: StackSettings) -> str:
    """``env.java.opts.all`` of the generated configuration (the JDK 17 module openings).

    Flink's launcher reads it only when ``FLINK_ENV_JAVA_OPTS`` is unset, and the services
    set that variable (to mark their JVMs), so they pass these options on themselves.
    """
    tree = yaml.safe_load((flink_conf_dir(settings) / "config.yaml").read_text()) or {}
    node: Any = tree
    for part in ("env", "java", "opts", "all"):
        node = node.get(part) if isinstance(node, dict) else None
    flat = tree.get("env.java.opts.all")
    return str(node if isinstance(node, str) else flat or "")


def flink_env(settings: StackSettings, log_dir: Path) -> dict[str, str]:
    """Environment for Flink's launcher scripts and the `flink` CLI."""
    return {
        "FLINK_HOME": str(flink_home()),
        "FLINK_CONF_DIR": str(flink_conf_dir(settings)),
        "FLINK_LOG_DIR": str(log_dir),
        "FLINK_PID_DIR": str(log_dir),
        "PYFLINK_CLIENT_EXECUTABLE": sys.executable,
    }


#: Flink's Prometheus Pushgateway reporter, a plugin of the JobManager and the TaskManager.
#: It pushes to the stack's Pushgateway (loopback): Flink's scraped reporter
#: (PrometheusReporterFactory) has no bind-address option and listens on every interface.
REPORTER_FACTORY = "org.apache.flink.metrics.prometheus.PrometheusPushGatewayReporterFactory"
#: The ``job`` label of every Flink process's series (the Pushgateway's grouping key).
PUSH_JOB = "flink"


def flink_plugins_dir(settings: StackSettings) -> Path:
    """FLINK_PLUGINS_DIR of the local cluster: the reporter jar fetched by infra/maven."""
    return settings.local.state_dir / "flink" / "plugins"


def flink_lib_dir(settings: StackSettings) -> Path:
    """FLINK_LIB_DIR of the cluster's processes in thread mode: Flink's lib/ + flink-python."""
    return settings.local.state_dir / "flink" / "lib"


def thread_mode(settings: StackSettings) -> bool:
    """Whether the cluster is set up for thread-mode jobs (``flink.python_execution_mode``)."""
    return settings.flink.python_execution_mode == "thread"


def install_cluster_lib(settings: StackSettings) -> Path:
    """Link Flink's lib/ jars and opt/flink-python into the cluster's lib folder.

    Thread mode runs the Python functions in the TaskManager's JVM through PEMJA (bundled in
    flink-python), whose native library loads once per JVM: loaded by each job's class
    loader, every later thread-mode job on that TaskManager failed with
    ``NoSuchFieldException: loadedLibraryNames`` (Java 17, FLINK-37727) until it restarted.
    With flink-python on the cluster's class path and ``pemja.`` loaded parent first, it is
    loaded once for all jobs. PEMJA alone there is not enough: it calls back into
    flink-python's classes. Only in thread mode: flink-python brings its Beam classes, and a
    Beam pipeline submitted to the cluster then finds two copies (``... not a subtype``).
    """
    home = flink_home()
    folder = flink_lib_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    jars = [*sorted((home / "lib").glob("*.jar")),
            *sorted((home / "opt").glob("flink-python-*.jar"))]
    wanted = {jar.name: jar for jar in jars}
    for link in folder.iterdir():
        if link.name not in wanted or link.resolve() != wanted[link.name].resolve():
            link.unlink()
    for name, jar in wanted.items():
        if not (folder / name).is_symlink():
            (folder / name).symlink_to(jar)
    return folder


def install_metrics_reporter(settings: StackSettings) -> Path:
    """Copy the reporter jar (jars/flink-metrics) into the cluster's plugins folder."""
    source = settings.local.state_dir / "jars" / "flink-metrics"
    jars = sorted(source.glob("flink-metrics-prometheus-*.jar"))
    if not jars:
        raise FileNotFoundError(
            f"no Prometheus reporter jar in {source}; run `make jars` "
            "(mvn -f infra/maven/pom.xml package)")
    folder = flink_plugins_dir(settings) / "metrics-prometheus"
    folder.mkdir(parents=True, exist_ok=True)
    jar, target = jars[-1], folder / jars[-1].name
    for stale in folder.glob("*.jar"):
        if stale != target:
            stale.unlink()
    # A running JobManager has the jar open while the TaskManager is (re)started: never
    # rewrite it in place; a new copy replaces it under its name.
    if not target.exists() or target.stat().st_size != jar.stat().st_size:
        shutil.copyfile(jar, folder / f".{jar.name}.tmp")
        (folder / f".{jar.name}.tmp").replace(target)
    return folder


def reporter_properties(settings: StackSettings, component: str,
                        instance: str | None = None) -> list[str]:
    """Dynamic properties (``-D key=value``) pushing ``component``'s metrics.

    On the command line, not in config.yaml: the JobManager and TaskManager read one
    config.yaml and need distinct grouping keys, and the `flink` client reads it too.
    Each process pushes to its own group, ``job="flink", component=..., instance=...``
    (``instance`` is the service's name, ``flink-<component>`` unless given)
    (Prometheus scrapes the Pushgateway with honor_labels), and deletes it on a clean
    shutdown; a killed process's last push stays until it starts again (FlinkMetricsStale).
    """
    mon = settings.monitoring
    properties = {
        "metrics.reporter.prom.factory.class": REPORTER_FACTORY,
        "metrics.reporter.prom.hostUrl": f"http://127.0.0.1:{mon.pushgateway_port}",
        "metrics.reporter.prom.jobName": PUSH_JOB,
        # One fixed group per process: a restart replaces its series, never adds a group.
        "metrics.reporter.prom.randomJobNameSuffix": "false",
        "metrics.reporter.prom.groupingKey":
            f"component={component};instance={instance or f'flink-{component}'}",
        "metrics.reporter.prom.deleteOnShutdown": "true",
        "metrics.reporter.prom.interval": f"{mon.flink_push_interval_s} SECONDS",
        # Label values as Flink names them (job_name="feedline-fanout", as `feedctl jobs
        # list` shows), not with every character outside [a-zA-Z0-9:_] turned into "_".
        "metrics.reporter.prom.filterLabelValueCharacters": "false",
        # runningState, restartingState ...: 1 while the job is in that state.
        "metrics.job.status.enable": "STATE;CURRENT_TIME",
    }
    return [arg for key, value in properties.items() for arg in ("-D", f"{key}={value}")]


def rest_get(base_url: str, path: str, timeout_s: float = 3.0) -> Any:
    """GET a Flink REST path and decode the JSON."""
    with urllib.request.urlopen(f"{base_url}{path}", timeout=timeout_s) as resp:  # noqa: S310
        return json.loads(resp.read())


class _FlinkProcess(Service):
    role = ""

    def endpoint(self) -> str:
        """REST URL of the cluster."""
        return self.settings.flink.rest_url

    def prepare(self) -> None:
        """Generate the cluster configuration; put the metrics reporter in its plugins."""
        write_flink_conf(self.settings)
        install_metrics_reporter(self.settings)
        if thread_mode(self.settings):
            install_cluster_lib(self.settings)

    def command(self) -> tuple[list[str], Mapping[str, str]]:
        """Run Flink's launcher in the foreground (it execs the JVM, so the pid is java's)."""
        script = flink_home() / "bin" / f"{self.role}.sh"
        env = flink_env(self.settings, self.home / "logs")
        env["FLINK_ENV_JAVA_OPTS"] = f"{java_opts(self.settings)} -Dfeedline.home={self.home}"
        env["FLINK_PLUGINS_DIR"] = str(flink_plugins_dir(self.settings))
        if thread_mode(self.settings):
            env["FLINK_LIB_DIR"] = str(flink_lib_dir(self.settings))
        # Every job's Python workers inherit the process's environment: the PYTHONPATH of
        # whoever (re)started it — a shell in another checkout — would put that checkout's
        # code in front of every job's. Workers import the installed package, or what a job
        # ships (`flink run -pyfs`).
        env["PYTHONPATH"] = ""
        return ["bash", str(script), "start-foreground",
                *reporter_properties(self.settings, self.role, self.name),
                *self.dynamic_properties()], env

    def dynamic_properties(self) -> list[str]:
        """More ``-D key=value`` arguments of this process."""
        return []

    def marker(self) -> str:
        """The JVM carries -Dfeedline.home=<its folder>."""
        return f"-Dfeedline.home={self.home}"


class FlinkJobManagerService(_FlinkProcess):
    """Flink JobManager with the REST API."""

    name = "flink-jobmanager"
    role = "jobmanager"

    def after_healthy(self) -> None:
        """Start again the deployed jobs a restart lost (none when it did not restart)."""
        from jobs.keeper import resume_lost  # the keeper deploys through this package

        resume_lost(self.settings, say=lambda line: print(f"{self.name:<20} {line}", flush=True))

    def healthy(self) -> bool:
        """REST answers /overview."""
        try:
            rest_get(self.settings.flink.rest_url, "/overview", timeout_s=2)
            return True
        except (urllib.error.URLError, OSError, ValueError):
            return False


class FlinkTaskManagerService(_FlinkProcess):
    """Flink TaskManager number ``index`` (1, 2 …) registered with the JobManager.

    Its Flink resource id is its service name (``flink-taskmanager``,
    ``flink-taskmanager-2`` …): the REST API's ``/taskmanagers`` and a job's vertices name it,
    so a test can tell which process runs which subtask.
    """

    role = "taskmanager"

    def __init__(self, settings: StackSettings, index: int = 1) -> None:
        self.index = index
        self.name = taskmanager_name(index)
        super().__init__(settings)

    def dynamic_properties(self) -> list[str]:
        """The resource id (the service name)."""
        return ["-D", f"taskmanager.resource-id={self.name}"]

    def healthy(self) -> bool:
        """Registered under its resource id and heartbeating (a dead one stays listed a while)."""
        try:
            listed = rest_get(self.settings.flink.rest_url, "/taskmanagers", timeout_s=2)
        except (urllib.error.URLError, OSError, ValueError):
            return False
        now_ms = time.time() * 1000
        # "timeSinceLastHeartbeat" holds the epoch ms of the last heartbeat (0 before one).
        return any(
            tm.get("id") == self.name
            and (tm.get("timeSinceLastHeartbeat", 0) == 0
                 or now_ms - tm["timeSinceLastHeartbeat"] < 6000)
            for tm in listed.get("taskmanagers", [])
        )


def taskmanager_name(index: int) -> str:
    """The service name (and Flink resource id) of TaskManager number ``index``."""
    return "flink-taskmanager" if index == 1 else f"flink-taskmanager-{index}"


def taskmanager_services(settings: StackSettings) -> list[FlinkTaskManagerService]:
    """The local cluster's TaskManagers (``local.flink_taskmanagers`` of them)."""
    return [FlinkTaskManagerService(settings, index)
            for index in range(1, settings.local.flink_taskmanagers + 1)]
