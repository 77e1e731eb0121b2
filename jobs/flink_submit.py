"""Submit PyFlink jobs to a Flink cluster with the `flink` CLI of the PyFlink package.

Every path handed to the cluster comes from settings (``FlinkSettings``): the interpreter
of the Python workers, the client's configuration, the savepoint folder. Their defaults
are the local stack's, where the cluster shares this machine and this interpreter; a
cluster in containers (docker-compose.yml) submits from inside its own image instead.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from feedline.settings import StackSettings
from jobs.localstack.flink import flink_env, flink_home, write_flink_conf

_JOB_ID = re.compile(r"JobID ([0-9a-f]{32})")


def connector_jar_urls(settings: StackSettings) -> list[str]:
    """file:// URLs of every jar in ``flink.jars_dir`` (the Kafka connector)."""
    jars = sorted(Path(settings.flink.jars_dir).glob("*.jar"))
    if not jars:
        raise FileNotFoundError(f"no connector jars in {settings.flink.jars_dir}; run `make jars`")
    return [jar.resolve().as_uri() for jar in jars]


def worker_python(settings: StackSettings) -> str:
    """The interpreter the TaskManagers run the jobs' Python workers with."""
    return settings.flink.python_executable or sys.executable


def savepoint_target(settings: StackSettings) -> str:
    """The folder URI savepoints go to (``flink.savepoint_dir`` or the local stack's)."""
    if settings.flink.savepoint_dir:
        return settings.flink.savepoint_dir
    return (settings.local.state_dir / "flink" / "savepoints").resolve().as_uri()


@dataclass(frozen=True)
class Submission:
    """What `flink run` reported."""

    job_id: str | None
    returncode: int
    output: str


def flink_run_argv(
    settings: StackSettings,
    script: Path,
    job_args: Sequence[str],
    *,
    detached: bool = False,
    from_savepoint: str | None = None,
) -> list[str]:
    """The `flink run` command line of a Python job (the job's own flags last).

    The client runs here (``-pyclientexec`` is this interpreter); the workers run on the
    cluster (``-pyexec`` is ``worker_python``).
    """
    rest = urlsplit(settings.flink.rest_url)
    argv = [str(flink_home() / "bin" / "flink"), "run"]
    if detached:
        argv.append("-d")
    if from_savepoint:
        argv += ["-s", from_savepoint]
    if settings.flink.ship_python_paths:
        argv += ["-pyfs", ",".join(settings.flink.ship_python_paths)]
    return [
        *argv,
        "-m", f"{rest.hostname}:{rest.port or 8081}",
        "-p", str(settings.flink.parallelism),
        "-py", str(script),
        "-pyexec", worker_python(settings),
        "-pyclientexec", sys.executable,
        *job_args,
    ]


def client_environment(settings: StackSettings) -> dict[str, str]:
    """Environment of the `flink` client: its configuration folder and log folder.

    Without ``flink.client_conf_dir`` the local stack's configuration is written first (it
    is idempotent): the client needs it even when this checkout did not start the cluster.
    """
    conf_dir = settings.flink.client_conf_dir
    if conf_dir is None:
        write_flink_conf(settings)
    log_dir = settings.local.state_dir / "flink-client" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        **flink_env(settings, log_dir),
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
    }
    if conf_dir is not None:
        env["FLINK_CONF_DIR"] = str(conf_dir)
    return env


def submit_python_job(
    settings: StackSettings,
    script: Path,
    job_args: Sequence[str],
    *,
    detached: bool = False,
    from_savepoint: str | None = None,
    timeout_s: float = 600,
) -> Submission:
    """Run ``flink run -py script`` against the configured cluster.

    Attached (the default) waits for a bounded job to finish; detached returns once the
    job is submitted. ``from_savepoint`` restores state from a savepoint or retained
    checkpoint. The job's own flags follow ``job_args``.
    """
    argv = flink_run_argv(
        settings, script, job_args, detached=detached, from_savepoint=from_savepoint
    )
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env=client_environment(settings),
        timeout=timeout_s,
        check=False,
    )
    output = result.stdout + result.stderr
    match = _JOB_ID.search(output)
    return Submission(match.group(1) if match else None, result.returncode, output)
