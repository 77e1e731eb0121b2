"""Deploy the streaming jobs onto a Flink cluster (used by feedctl and the tests)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from feedline.settings import StackSettings, StreamingSettings
from jobs import keeper
from jobs.flink_rest import running, running_tasks, wait_for_state
from jobs.flink_submit import Submission, connector_jar_urls, submit_python_job
from jobs.specs import JOBS, JobSpec


class DeployError(RuntimeError):
    """The job could not be submitted or did not start."""


def job_settings_json(streaming: StreamingSettings, release: Path | None) -> str:
    """The settings a job reads (``--settings-file``), as JSON.

    A release (``jobs.releases``) may be older code than the submitter's, whose settings
    model refuses a setting it does not know (``feedctl jobs rollback`` to a version from
    before a setting was added failed so). It gets only the settings that differ from
    their defaults; the rest take the release's own defaults. A new setting given a value
    of its own still reaches an older release, which then refuses it by name.
    """
    if release is None:
        return streaming.model_dump_json()
    return streaming.model_dump_json(exclude_defaults=True)


def deploy(
    stack: StackSettings,
    streaming: StreamingSettings,
    name: str,
    *,
    suffix: str = "",
    from_savepoint: str | None = None,
    wait_running_s: float = 180,
    keep: bool = False,
    spec: JobSpec | None = None,
    release: Path | None = None,
) -> str:
    """Submit job ``name`` detached and wait until all its tasks run; returns the job id.

    Refuses to start a second copy of a job that is already running. ``keep`` records the
    deployment so that `jobs.keeper` starts it again after a JobManager restart.
    ``spec`` (default ``JOBS[name]``) sets the entry point and extra flags; with a
    ``release`` (a code version's folder, ``jobs.releases``) the job runs that copy of the
    code, shipped first on the workers' path, at the spec's parallelism.
    """
    spec = spec or JOBS[name]
    job_name = spec.job_name(suffix)
    if running(stack.flink.rest_url, job_name):
        raise DeployError(f"{job_name} is already running; cancel it first")
    script = spec.script
    if release is not None:
        flink = stack.flink.model_copy(update={
            "ship_python_paths": [str(release)], "parallelism": spec.parallelism})
        stack = stack.model_copy(update={"flink": flink})
        streaming = streaming.model_copy(update={"flink": streaming.flink.model_copy(
            update={"parallelism": spec.parallelism})})
        script = release.joinpath(*spec.entry_point.split(".")).with_suffix(".py")
    # The settings hold the stores' credentials: in a file only its owner reads, not in the
    # client's arguments (which every local user sees in the process list).
    with tempfile.NamedTemporaryFile("w", prefix="feedline-settings-", suffix=".json",
                                     encoding="utf-8") as settings_file:
        settings_file.write(job_settings_json(streaming, release))
        settings_file.flush()
        submission: Submission = submit_python_job(
            stack,
            script,
            [
                "--settings-file", settings_file.name,
                "--group-id", spec.group_id(suffix),
                "--job-name", job_name,
                "--jars", ",".join(connector_jar_urls(stack)),
                *spec.flags,
            ],
            detached=True,
            from_savepoint=from_savepoint,
        )
    if submission.returncode != 0 or submission.job_id is None:
        raise DeployError(f"flink run failed for {job_name}:\n{submission.output[-4000:]}")
    if keep:
        keeper.remember(stack, keeper.KeptJob(
            name, suffix, submission.job_id, from_savepoint, streaming.model_dump_json(),
            str(release) if release else None, list(spec.flags), spec.entry_point or None))
    wait_for_state(stack.flink.rest_url, submission.job_id, {"RUNNING"}, timeout_s=wait_running_s)

    deadline = time.monotonic() + wait_running_s
    while not running_tasks(stack.flink.rest_url, submission.job_id):
        if time.monotonic() > deadline:
            raise DeployError(f"{job_name}: tasks not all RUNNING after {wait_running_s}s")
        time.sleep(0.5)
    return submission.job_id
