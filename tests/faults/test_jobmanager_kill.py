"""The Flink JobManager killed (SIGKILL) mid-stream: with no HA services it forgets every job.

The stack's supervisor starts it again, and its set-up step resumes each deployed job from
its newest retained checkpoint (`jobs.keeper`); events produced while no JobManager ran are
consumed then. No manual step: the test only kills and waits. The stores must end equal to
the reference model exactly (nothing lost, nothing applied twice), and the JobManager's
restart must show in its restart record (what `feedctl local status` prints).

It kills the shared stack's JobManager: every other job on the cluster is lost with it
(only jobs deployed through feedctl, or with ``keep``, come back).
"""

from __future__ import annotations

import os
import signal

import pytest

from feedline.settings import FeedSettings, StackSettings
from feedline.workload import Workload, WorkloadSpec
from jobs import flink_rest
from jobs.load import produce
from jobs.localstack import restarts
from jobs.localstack.flink import FlinkJobManagerService
from jobs.sandbox import open_sandbox
from jobs.specs import JOBS
from tests.support.pipeline import events_of, wait_converged
from tests.support.reference import reference_for
from tests.support.waiting import eventually

pytestmark = [pytest.mark.faults, pytest.mark.integration]

FEED = FeedSettings(celebrity_threshold=25, follow_merge_limit=4, timeline_cap=12)
SPEC = WorkloadSpec(users=120, posts=160, mean_followers=8, max_followers=30,
                    likes_per_post=3, comments_per_post=1, seed=23)


def _checkpoints(rest: str, job_id: str) -> int:
    return int(flink_rest.call(rest, "GET", f"/jobs/{job_id}/checkpoints")["counts"]["completed"])


def _restored_id(rest: str, job_name: str) -> str | None:
    """The id of the running job of that name once it restored a checkpoint.

    While a job initialises, the REST API answers its checkpoint statistics with a 500.
    """
    try:
        for job in flink_rest.running(rest, job_name):
            latest = flink_rest.call(rest, "GET", f"/jobs/{job.job_id}/checkpoints")["latest"]
            if latest.get("restored") is not None and flink_rest.running_tasks(rest, job.job_id):
                return job.job_id
    except flink_rest.FlinkRestError:
        return None
    return None


def _answering(rest: str) -> bool:
    try:
        flink_rest.list_jobs(rest)
    except flink_rest.FlinkRestError:
        return False
    return True


def test_jobmanager_killed_jobs_resume_from_their_checkpoints(stack: StackSettings) -> None:
    flink = stack.flink.model_copy(update={"checkpoint_interval_ms": 1000})
    pipeline = open_sandbox(stack, FEED, flink)
    rest = stack.flink.rest_url
    produced = list(Workload(SPEC).events())
    half = len(produced) // 2
    jobmanager = FlinkJobManagerService(stack)
    restarts_before = restarts.load(jobmanager.home).restarts
    try:
        old = pipeline.deploy_all(("fanout", "counters"), keep=True)
        kafka = pipeline.streaming.kafka
        produce(kafka, produced[:half])
        eventually(lambda: all(_checkpoints(rest, j) >= 2 for j in old.values()), "checkpoints")

        pid = jobmanager.process.pid()
        assert pid is not None
        os.killpg(pid, signal.SIGKILL)
        eventually(lambda: not _answering(rest), "the JobManager gone")
        produce(kafka, produced[half:])  # arrives while no JobManager runs

        names = {name: JOBS[name].job_name(pipeline.suffix) for name in old}
        resumed: dict[str, str] = {}

        def all_resumed() -> bool:
            for name, job_name in names.items():
                if name not in resumed and (job_id := _restored_id(rest, job_name)):
                    resumed[name] = job_id
            return len(resumed) == len(names)

        eventually(lambda: _answering(rest) and all_resumed(),
                   "both jobs running again, restored from a checkpoint")
        assert set(resumed.values()).isdisjoint(old.values())  # new deployments, by the keeper
        pipeline.job_ids.update(resumed)
        assert restarts.load(jobmanager.home).restarts > restarts_before

        expected = reference_for(events_of(produced), FEED)
        assert expected.celebrities and expected.deleted_posts
        assert wait_converged(pipeline, expected) == []
    finally:
        pipeline.close()
