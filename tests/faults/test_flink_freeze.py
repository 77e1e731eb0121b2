"""The Flink JobManager, or every TaskManager, frozen (SIGSTOP) mid-stream for longer than
Flink's heartbeat timeout.

A sandboxed fan-out and counters job pair (the sandbox's own topics, keyspace and Redis
prefix) runs on the stack's cluster; half of a workload is produced and checkpointed, then
the processes are frozen for ``FREEZE_S`` (the stack's ``heartbeat.timeout`` is 10 s, so on
waking the JobManager and the TaskManagers each find the other gone) while the other half
is produced. After SIGCONT nothing is done by hand: within ``RECOVERY_BOUND_S`` both jobs
must run again and complete a new checkpoint, and the stores must end equal to the
reference model exactly (nothing lost, nothing applied twice).

It freezes the shared stack's Flink processes: every other job on the cluster stalls with
them (and restarts from its checkpoint when Flink fails it over).
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from feedline.settings import FeedSettings, StackSettings
from feedline.workload import Workload, WorkloadSpec
from jobs import flink_rest
from jobs.load import produce
from jobs.localstack.flink import FlinkJobManagerService, taskmanager_services
from jobs.sandbox import open_sandbox
from tests.support.faults import note
from tests.support.pipeline import events_of, wait_converged
from tests.support.reference import reference_for
from tests.support.waiting import eventually

pytestmark = [pytest.mark.faults, pytest.mark.integration]

FEED = FeedSettings(celebrity_threshold=25, follow_merge_limit=4, timeline_cap=12)
SPEC = WorkloadSpec(users=100, posts=120, mean_followers=8, max_followers=30,
                    likes_per_post=3, comments_per_post=1, post_delete_share=0.05,
                    unfollow_share=0.05, seed=31)
#: Longer than the stack's heartbeat.timeout (10 s): the freeze looks like a lost process.
FREEZE_S = 20.0
#: From SIGCONT to both jobs running and checkpointing again, and the stores exact.
RECOVERY_BOUND_S = 300.0


def _completed(rest: str, job_id: str) -> int:
    try:
        counts = flink_rest.call(rest, "GET", f"/jobs/{job_id}/checkpoints")["counts"]
    except flink_rest.FlinkRestError:  # initialising, or the JobManager just woke up
        return -1
    return int(counts["completed"])


def _running(rest: str, job_id: str) -> bool:
    try:
        return bool(flink_rest.running_tasks(rest, job_id))
    except flink_rest.FlinkRestError:
        return False


@pytest.mark.parametrize("frozen", ["jobmanager", "taskmanagers"])
def test_flink_frozen_past_its_heartbeat_timeout_recovers_exactly(
        stack: StackSettings, frozen: str) -> None:
    flink = stack.flink.model_copy(update={"checkpoint_interval_ms": 1000})
    pipeline = open_sandbox(stack, FEED, flink)
    rest = stack.flink.rest_url
    produced = list(Workload(SPEC).events())
    half = len(produced) // 2
    services = ([FlinkJobManagerService(stack)] if frozen == "jobmanager"
                else taskmanager_services(stack))
    try:
        jobs = pipeline.deploy_all(("fanout", "counters"))
        kafka = pipeline.streaming.kafka
        produce(kafka, produced[:half])
        eventually(lambda: all(_completed(rest, j) >= 2 for j in jobs.values()),
                   "two checkpoints of each job before the freeze")
        pids = [pid for svc in services if (pid := svc.process.pid()) is not None]
        assert pids, f"no {frozen} process of this stack to freeze"
        note(f"freezing flink {frozen} (SIGSTOP groups {pids}) {FREEZE_S:.0f} s")
        for pid in pids:
            os.killpg(pid, signal.SIGSTOP)
        try:
            produce(kafka, produced[half:])  # arrives while Flink is frozen
            time.sleep(FREEZE_S)
        finally:
            for pid in pids:
                os.killpg(pid, signal.SIGCONT)
            thawed_at = time.monotonic()
            note(f"flink {frozen} resumed (SIGCONT groups {pids})")
        before = {name: _completed(rest, j) for name, j in jobs.items()}
        eventually(lambda: all(_running(rest, j) and _completed(rest, j) > before[name]
                               for name, j in jobs.items()),
                   "both jobs running and checkpointing again after the freeze",
                   timeout_s=RECOVERY_BOUND_S)
        running_at = time.monotonic()
        expected = reference_for(events_of(produced), FEED)
        assert expected.celebrities and expected.deleted_posts
        assert wait_converged(pipeline, expected, timeout_s=RECOVERY_BOUND_S) == []
        print(f"\nflink {frozen} frozen {FREEZE_S:.0f} s: jobs checkpointing again "
              f"{running_at - thawed_at:.1f} s after SIGCONT, stores exact "
              f"{time.monotonic() - thawed_at:.1f} s after it")
    finally:
        pipeline.close()
