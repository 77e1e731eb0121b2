"""Submit PyFlink jobs to a Flink cluster with the `flink` CLI of the PyFlink package."""

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


@dataclass(frozen=True)
class Submission:
    """What `flink run` reported."""

    job_id: str | None
    returncode: int
    output: str


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
    rest = urlsplit(settings.flink.rest_url)
    argv = [
        str(flink_home() / "bin" / "flink"),
        "run",
        "-m",
        f"{rest.hostname}:{rest.port or 8081}",
        "-p",
        str(settings.flink.parallelism),
        "-py",
        str(script),
        "-pyexec",
        sys.executable,
        "-pyclientexec",
        sys.executable,
    ]
    if detached:
        argv.insert(2, "-d")
    if from_savepoint:
        argv[2:2] = ["-s", from_savepoint]
    # The client needs the cluster's configuration even when this checkout did not start
    # the cluster (a stack reused from elsewhere): write it, it is idempotent.
    write_flink_conf(settings)
    log_dir = settings.local.state_dir / "flink-client" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        **flink_env(settings, log_dir),
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
    }
    result = subprocess.run(
        [*argv, *job_args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout_s,
        check=False,
    )
    output = result.stdout + result.stderr
    match = _JOB_ID.search(output)
    return Submission(match.group(1) if match else None, result.returncode, output)
