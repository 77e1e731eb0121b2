"""Rescaling from savepoints: both feed jobs start at parallelism 1, are stopped with a
savepoint and started from it at parallelism 2, then stopped again and started at 1, with
a third of the workload produced in each phase. Flink redistributes the keyed state (the
authors' fan-out state, the counters, the writers' buffers) by key group; the stores must
end equal to the reference model exactly: nothing lost, nothing applied twice."""

from __future__ import annotations

from feedline.settings import FeedSettings, StackSettings
from feedline.workload import Workload, WorkloadSpec
from jobs import flink_rest
from jobs.flink_submit import savepoint_target
from jobs.load import produce
from jobs.sandbox import open_sandbox
from tests.support.pipeline import events_of, wait_converged
from tests.support.reference import reference_for

FEED = FeedSettings(celebrity_threshold=25, follow_merge_limit=4, timeline_cap=12)
SPEC = WorkloadSpec(users=120, posts=180, mean_followers=10, max_followers=40,
                    likes_per_post=3, comments_per_post=1, post_delete_share=0.05,
                    unfollow_share=0.05, seed=23)
JOBS = ("fanout", "counters")


def test_rescale_one_two_one_from_savepoints_keeps_state_exact(stack: StackSettings) -> None:
    sb = open_sandbox(stack, FEED, stack.flink.model_copy(update={"parallelism": 1}))
    rest = stack.flink.rest_url
    produced = list(Workload(SPEC).events())
    third = len(produced) // 3
    phases = [produced[:third], produced[third:2 * third], produced[2 * third:]]
    try:
        ids = sb.deploy_all(JOBS)
        for phase, (parallelism, events) in enumerate(zip((1, 2, 1), phases, strict=True)):
            if phase:
                target = savepoint_target(stack)
                points = {name: flink_rest.stop_with_savepoint(rest, ids[name], target)
                          for name in JOBS}
                ids = sb.deploy_all(JOBS, points, parallelism=parallelism)
            for name in JOBS:
                placed = flink_rest.task_placement(rest, ids[name])
                subtasks = flink_rest.call(rest, "GET", f"/jobs/{ids[name]}")["vertices"]
                assert {v["parallelism"] for v in subtasks} == {parallelism}, (name, placed)
            produce(sb.streaming.kafka, events)
        expected = reference_for(events_of(produced), FEED)
        assert expected.celebrities and expected.deleted_posts
        assert wait_converged(sb, expected) == []
    finally:
        sb.close()
