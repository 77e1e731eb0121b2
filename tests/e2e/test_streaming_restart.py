"""Checkpoints and restarts: kill a TaskManager mid-stream, then stop both jobs with
savepoints and start them again from those; the final state still equals the reference
model exactly — nothing lost, nothing counted twice.

At parallelism 1 and 2, on the local cluster's two TaskManager processes. Flink gives each
slot to the process with the fewest slots in use (``taskmanager.load-balance.mode: slots``),
so a job at parallelism 2 runs in both unless the other jobs' slots are uneven (an earlier
kill moved the stack's jobs to one process, as this test's first case does: CI then saw
each job's two subtasks share a process); the placement is printed, not required. The
TaskManager killed is the one running most of the fan-out job, and every job with a subtask
there restores from its latest checkpoint while the other process keeps running. The
stack's supervisor restarts the killed TaskManager (no manual step; a stack without one is
brought up by the test)."""

from __future__ import annotations

import os
import signal

import pytest

from feedline.settings import FeedSettings, StackSettings
from feedline.workload import Workload, WorkloadSpec
from jobs import flink_rest
from jobs.flink_submit import savepoint_target
from jobs.load import produce
from jobs.localstack import stack as local_stack
from jobs.localstack.flink import taskmanager_services
from jobs.sandbox import open_sandbox
from tests.support.pipeline import events_of, wait_converged
from tests.support.reference import reference_for
from tests.support.waiting import eventually

FEED = FeedSettings(celebrity_threshold=25, follow_merge_limit=4, timeline_cap=12)
SPEC = WorkloadSpec(users=150, posts=240, mean_followers=10, max_followers=40,
                    likes_per_post=3, comments_per_post=1, seed=11)


def _completed_checkpoints(rest: str, job_id: str) -> int:
    return int(flink_rest.call(rest, "GET", f"/jobs/{job_id}/checkpoints")["counts"]["completed"])


def _restored(rest: str, job_id: str) -> bool:
    latest = flink_rest.call(rest, "GET", f"/jobs/{job_id}/checkpoints")["latest"]
    return latest.get("restored") is not None


def _busiest(count: dict[str, int]) -> str:
    """The TaskManager running the most subtasks in ``count`` (by name, on a tie)."""
    return min(count, key=lambda name: (-count[name], name))


@pytest.mark.parametrize("parallelism", [1, 2])
def test_kill_taskmanager_then_savepoint_restart_loses_and_doubles_nothing(
    stack: StackSettings, parallelism: int,
) -> None:
    services = {svc.name: svc for svc in taskmanager_services(stack)}
    if parallelism > len(services):
        pytest.skip(f"the local cluster has {len(services)} TaskManager(s)")
    flink = stack.flink.model_copy(update={"checkpoint_interval_ms": 1000,
                                           "parallelism": parallelism})
    pipeline = open_sandbox(stack, FEED, flink)
    rest = stack.flink.rest_url
    produced = list(Workload(SPEC).events())
    thirds = [produced[: len(produced) // 3], produced[len(produced) // 3: 2 * len(produced) // 3],
              produced[2 * len(produced) // 3:]]
    try:
        ids = pipeline.deploy_all(("fanout", "counters"))
        fanout, counters = ids["fanout"], ids["counters"]
        kafka = pipeline.streaming.kafka
        produce(kafka, thirds[0])

        # Mid-stream: once both jobs have checkpointed and the stores show progress.
        eventually(lambda: _completed_checkpoints(rest, fanout) >= 2
              and _completed_checkpoints(rest, counters) >= 2, "checkpoints")
        eventually(lambda: pipeline.session.execute("SELECT count(*) FROM followers").one()[0] > 0,
              "first writes")
        assert all(flink_rest.job_parallelism(rest, job) == parallelism
                   for job in (fanout, counters))
        # Subtasks per TaskManager (resource ids: service names), read once per job.
        counts = {job_id: flink_rest.subtasks_per_taskmanager(rest, job_id)
                  for job_id in (fanout, counters)}
        placed = {job_id: set(count) for job_id, count in counts.items()}
        print(f"placement: fan-out {counts[fanout]}, counters {counts[counters]}")
        victim = services[_busiest(counts[fanout])]
        pid = victim.process.pid()
        assert pid is not None
        os.killpg(pid, signal.SIGKILL)  # the TaskManager and its Python workers die at once
        produce(kafka, thirds[1])  # arrives while that TaskManager is dead
        if local_stack.supervisor_status(stack).healthy:
            # No manual step: the stack's supervisor starts it again.
            eventually(lambda: victim.process.pid() not in (None, pid) and victim.healthy(),
                       "the supervisor to restart the killed TaskManager", timeout_s=300)
        else:  # a stack without its supervisor: start what is missing by hand
            local_stack.up(stack, say=lambda m: print(f"[restart] {m}"))
        for job_id in (j for j, tms in placed.items() if victim.name in tms):
            eventually(lambda j=job_id: _restored(rest, j), "restore from the latest checkpoint")
            eventually(lambda j=job_id: flink_rest.running_tasks(rest, j), "tasks running again")

        target = savepoint_target(stack)
        savepoints = {
            name: flink_rest.stop_with_savepoint(rest, job_id, target)
            for name, job_id in (("fanout", fanout), ("counters", counters))
        }
        pipeline.deploy_all(list(savepoints), savepoints)
        produce(kafka, thirds[2])

        events = events_of(produced)
        expected = reference_for(events, FEED)
        assert expected.celebrities and expected.deleted_posts
        assert wait_converged(pipeline, expected) == []
    finally:
        pipeline.close()
