"""Deploy the streaming jobs onto a Flink cluster (used by feedctl and the tests)."""

from __future__ import annotations

import time

from feedline.settings import StackSettings, StreamingSettings
from jobs import keeper
from jobs.flink_rest import running, running_tasks, wait_for_state
from jobs.flink_submit import Submission, connector_jar_urls, submit_python_job
from jobs.specs import JOBS


class DeployError(RuntimeError):
    """The job could not be submitted or did not start."""


def deploy(
    stack: StackSettings,
    streaming: StreamingSettings,
    name: str,
    *,
    suffix: str = "",
    from_savepoint: str | None = None,
    wait_running_s: float = 180,
    keep: bool = False,
) -> str:
    """Submit job ``name`` detached and wait until all its tasks run; returns the job id.

    Refuses to start a second copy of a job that is already running. ``keep`` records the
    deployment so that `jobs.keeper` starts it again after a JobManager restart.
    """
    spec = JOBS[name]
    job_name = spec.job_name(suffix)
    if running(stack.flink.rest_url, job_name):
        raise DeployError(f"{job_name} is already running; cancel it first")
    submission: Submission = submit_python_job(
        stack,
        spec.script,
        [
            "--settings-json", streaming.model_dump_json(),
            "--group-id", spec.group_id(suffix),
            "--job-name", job_name,
            "--jars", ",".join(connector_jar_urls(stack)),
        ],
        detached=True,
        from_savepoint=from_savepoint,
    )
    if submission.returncode != 0 or submission.job_id is None:
        raise DeployError(f"flink run failed for {job_name}:\n{submission.output[-4000:]}")
    if keep:
        keeper.remember(stack, keeper.KeptJob(name, suffix, submission.job_id, from_savepoint,
                                              streaming.model_dump_json()))
    wait_for_state(stack.flink.rest_url, submission.job_id, {"RUNNING"}, timeout_s=wait_running_s)

    deadline = time.monotonic() + wait_running_s
    while not running_tasks(stack.flink.rest_url, submission.job_id):
        if time.monotonic() > deadline:
            raise DeployError(f"{job_name}: tasks not all RUNNING after {wait_running_s}s")
        time.sleep(0.5)
    return submission.job_id
