"""The notifications job stopped with a savepoint mid-stream and started again from it
(its keyed summaries, register maps, the writer's pending effects and timers restored by
operator uid and state name), events arriving meanwhile: the stores still equal the
reference exactly — nothing lost, nothing left behind."""

from __future__ import annotations

import time

from feedline.settings import FeedSettings, StackSettings
from jobs import flink_rest
from jobs.flink_submit import savepoint_target
from jobs.load import produce
from jobs.sandbox import open_sandbox
from tests.support.notification_workload import (
    NotificationWorkload,
    python_errors,
    store_differences,
)
from tests.support.notifications_reference import reference_notifications
from tests.support.waiting import HANG_GUARD_S, eventually


def _completed_checkpoints(rest: str, job_id: str) -> int:
    return int(flink_rest.call(rest, "GET", f"/jobs/{job_id}/checkpoints")["counts"]["completed"])


def test_savepoint_restart_mid_stream_loses_and_leaves_nothing(stack: StackSettings) -> None:
    flink = stack.flink.model_copy(update={"checkpoint_interval_ms": 1000})
    pipeline = open_sandbox(stack, FeedSettings(), flink)
    rest = stack.flink.rest_url
    workload = NotificationWorkload(seed=31, users=30, posts=240, tag="r")
    produced = [*workload.follows(300), *workload.activity()]
    thirds = [produced[: len(produced) // 3], produced[len(produced) // 3: 2 * len(produced) // 3],
              produced[2 * len(produced) // 3:]]
    try:
        job = pipeline.deploy("notifications")
        kafka = pipeline.streaming.kafka
        produce(kafka, thirds[0])
        eventually(lambda: _completed_checkpoints(rest, job) >= 2, "checkpoints")
        eventually(lambda: pipeline.session.execute(
            "SELECT count(*) FROM notification_groups").one()[0] > 0, "first writes")
        produce(kafka, thirds[1][: len(thirds[1]) // 2])  # in flight when it stops
        path = flink_rest.stop_with_savepoint(rest, job, savepoint_target(stack))
        produce(kafka, thirds[1][len(thirds[1]) // 2:])  # arrives while it is stopped
        restarted = pipeline.deploy("notifications", from_savepoint=path)
        produce(kafka, [*thirds[2], *workload.redelivered()])

        expected = reference_notifications([p.event for p in produced], known_users_only=True)
        assert {g[0] for g in expected.values()} == {"like", "comment", "follow", "mention"}
        deadline = time.monotonic() + HANG_GUARD_S
        while True:
            diff = store_differences(pipeline.session, pipeline.redis, pipeline.keys, expected)
            if not diff or time.monotonic() > deadline:
                break
            pipeline.assert_jobs_alive()
            time.sleep(2)
        assert diff[:20] == []
        assert python_errors(rest, job) + python_errors(rest, restarted) == []
    finally:
        pipeline.close()
