"""The rebuild jobs on Beam's Flink runner: a job server on an embedded Flink, run locally.

``feedctl rebuild JOB --runner flink`` runs the same pipeline as the DirectRunner, through
Beam's portable API:

    feedctl (main venv: quality gate, part listing)
      └─ JobServer: java … FlinkJobServerDriver --flink-master=[local]  (127.0.0.1, own ports)
      └─ the Beam venv's python -m pipelines.batch.rebuild_JOB --no-gate
             --runner=PortableRunner --job_endpoint=… --environment_type=LOOPBACK

The pipeline is launched from a second virtualenv (``BeamFlinkSettings.python``) because
PyFlink pins the main one's apache-beam to 2.61, while the job server's jars are of the
Beam version pinned there (``make beam-runner`` installs both). With LOOPBACK the Python
steps run in that launching process; the embedded Flink schedules them, shuffles and
groups. The local Flink 2.2 cluster is not used: see docs/SCALING.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from feedline.settings import BeamFlinkSettings
from jobs.localstack.base import free_port, port_open

#: The value of ``--runner`` that selects this runner.
FLINK_RUNNER = "flink"
#: The job server's entry point (in Beam's Flink runner jar).
DRIVER = "org.apache.beam.runners.flink.FlinkJobServerDriver"


class BeamRunnerMissing(RuntimeError):
    """The Beam virtualenv or the job server's jars are not installed."""


def check_installed(settings: BeamFlinkSettings) -> None:
    """Raise ``BeamRunnerMissing`` (naming the make target) when a piece is absent."""
    missing = [str(p) for p in (settings.python, settings.job_server_classpath) if not p.exists()]
    if missing:
        raise BeamRunnerMissing(f"the Flink runner is not installed ({', '.join(missing)} "
                                "missing): run `make beam-runner`")


class JobServer:
    """Beam's Flink job server as a local process on 127.0.0.1, stopped by its PID."""

    def __init__(self, settings: BeamFlinkSettings, log_dir: Path | None = None) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """The job service's host:port."""
        return f"127.0.0.1:{self.port}"

    def command(self, artifacts_dir: str) -> list[str]:
        """The java command line."""
        return ["java", f"-Xmx{self.settings.job_server_heap}",
                "-cp", f"{self.settings.job_server_classpath}/*", DRIVER,
                "--flink-master=[local]", "--job-host=127.0.0.1",
                f"--job-port={self.port}", f"--artifact-port={free_port()}",
                "--expansion-port=-1", f"--artifacts-dir={artifacts_dir}"]

    def __enter__(self) -> JobServer:
        check_installed(self.settings)
        self._scratch = tempfile.TemporaryDirectory(prefix="feedline-beam-flink-")
        folder = self.log_dir or Path(self._scratch.name)
        folder.mkdir(parents=True, exist_ok=True)
        self.log_path = folder / "beam-flink-job-server.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.command(os.path.join(self._scratch.name, "artifacts")),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + self.settings.startup_timeout_s
        while not port_open("127.0.0.1", self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self._stop()
                raise RuntimeError(f"the Beam Flink job server did not start; its log:\n"
                                   f"{self.log_path.read_text()[-3000:]}")
            time.sleep(0.3)
        return self

    def _stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop()
        self._scratch.cleanup()


def pipeline_args(settings: BeamFlinkSettings, endpoint: str) -> list[str]:
    """The Beam pipeline options of a run on the job server at ``endpoint``."""
    args = ["--runner=PortableRunner", f"--job_endpoint={endpoint}",
            f"--environment_type={settings.environment_type}",
            f"--parallelism={settings.parallelism}"]
    if settings.environment_config:
        args.append(f"--environment_config={settings.environment_config}")
    return args


def without_runner(argv: Sequence[str]) -> list[str]:
    """``argv`` without its ``--runner`` flag(s)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--runner":
            skip = True
        elif not arg.startswith("--runner="):
            out.append(arg)
    return out


def run_job(module: str, argv: Sequence[str], settings: BeamFlinkSettings,
            server: JobServer) -> int:
    """Run ``python -m module argv`` of the Beam venv on ``server``; its exit code.

    The gate ran in the caller (the Beam venv has no great_expectations): ``--no-gate``.
    """
    args = [a for a in without_runner(argv) if a != "--no-gate"]
    command = [str(settings.python), "-m", module, *args, "--no-gate",
               *pipeline_args(settings, server.endpoint)]
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(repo), os.environ.get("PYTHONPATH", "")) if p)}
    # Its progress lines go through this process's stderr (callers may capture them).
    with subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True) as proc:
        assert proc.stderr is not None
        for line in proc.stderr:
            sys.stderr.write(line)
    return proc.returncode
