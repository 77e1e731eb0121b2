"""A dead letter's event id reaches the TaskManager's log, where `feedctl local logs` finds it.

The fan-out job runs in a sandbox on the local cluster; broken records that still carry an
event id are produced to its topics. The parse step logs each dead letter through the
Python worker's log handler into the log file of the TaskManager running it, and `feedctl
local logs flink-taskmanager flink-taskmanager-2 --grep EVENT_ID --json` must show that line
with the event id as a field.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from kafka import KafkaProducer

from feedline.settings import REPO_ROOT, FeedSettings, StackSettings
from jobs.localstack.flink import taskmanager_services
from jobs.sandbox import Sandbox, open_sandbox
from schemas.event_contracts import encode_event, new_event
from tests.support.waiting import HANG_GUARD_S, eventually

FEED = FeedSettings(celebrity_threshold=25, follow_merge_limit=4, timeline_cap=12)


@pytest.fixture(scope="module")
def sandbox(stack: StackSettings) -> Iterator[Sandbox]:
    pipeline = open_sandbox(stack, FEED, partitions=1)
    try:
        pipeline.deploy("fanout")
        yield pipeline
    finally:
        pipeline.close()


def local_logs(stack: StackSettings, *args: str) -> list[dict[str, Any]]:
    """`feedctl local logs ARGS --json` over the stack's logs, parsed."""
    done = subprocess.run(
        [sys.executable, "-m", "jobs.feedctl.main", "local", "logs", *args, "--json"],
        capture_output=True, text=True, check=False, cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT),
             "FEEDLINE_LOCAL__STATE_DIR": str(stack.local.state_dir)})
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_dead_letters_are_logged_with_their_event_ids(stack: StackSettings,
                                                      sandbox: Sandbox) -> None:
    # The job runs in one of the cluster's TaskManagers: read all their logs.
    taskmanagers = [svc.name for svc in taskmanager_services(stack)]
    kafka = sandbox.streaming.kafka
    follow = json.loads(encode_event(new_event("follow", follower_id="a", followee_id="b")))
    missing = {k: v for k, v in follow.items() if k != "follower_id"}
    broken = {  # topic -> (bytes, reason); each with an event id of its own
        kafka.follows_topic: (json.dumps(missing).encode(), "missing_field"),
        kafka.uploads_topic: (encode_event(new_event("follow", follower_id="c",
                                                     followee_id="d")), "wrong_topic"),
    }
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
    positions = {}
    for topic, (payload, reason) in broken.items():
        meta = producer.send(topic, payload).get(timeout=HANG_GUARD_S)
        positions[json.loads(payload)["event_id"]] = (topic, meta.offset, reason)
    producer.close()

    for event_id, (topic, offset, reason) in positions.items():
        def logged(event_id: str = event_id) -> list[dict[str, Any]]:
            sandbox.assert_jobs_alive()
            return local_logs(stack, *taskmanagers, "--grep", event_id)

        lines = eventually(logged, f"the TaskManager's log line of dead letter {event_id}")
        for line in lines:  # once, or again after a restart from a checkpoint
            assert line["service"] in taskmanagers and line["level"] == "warning"
            assert line["event_id"] == event_id
            assert line["msg"] == f"dead letter {topic}[0]@{offset}: {reason} " \
                                  f"event_id={event_id}"
