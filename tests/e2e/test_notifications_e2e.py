"""A random workload -> Kafka -> the notifications job on the local Flink cluster -> CQL
and Redis, compared exactly with the independent reference: every live group in CQL, the
newest 500 per recipient in Redis (one recipient over the cap, then its newest groups
deleted, so its list is refilled from CQL). Mentions of unknown ids, own actions,
redelivered events and broken records are in the workload."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from kafka import KafkaProducer

from feedline.settings import FeedSettings, StackSettings
from jobs.load import produce
from jobs.sandbox import Sandbox, open_sandbox
from schemas.redis_notifications import NOTIFICATION_CAP
from tests.support.notification_workload import (
    NotificationWorkload,
    python_errors,
    store_differences,
)
from tests.support.notifications_reference import reference_notifications
from tests.support.waiting import HANG_GUARD_S

HEAVY_GROUPS, HEAVY_DELETED = NOTIFICATION_CAP + 40, 30


@pytest.fixture(scope="module")
def run(stack: StackSettings) -> Iterator[tuple[Sandbox, list[Any]]]:
    pipeline = open_sandbox(stack, FeedSettings())
    try:
        pipeline.deploy("notifications")
        workload = NotificationWorkload(seed=21, users=40, posts=150, tag="n")
        kafka = pipeline.streaming.kafka
        produced = [*workload.follows(400), *workload.activity()]
        produce(kafka, produced)
        raw = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
        for topic in kafka.event_topics:  # the job counts them and keeps going
            raw.send(topic, b"{not json").get(timeout=HANG_GUARD_S)
        raw.close()
        heavy = list(workload.heavy_recipient(HEAVY_GROUPS, HEAVY_DELETED))
        again = workload.redelivered()
        produce(kafka, [*heavy, *again])
        yield pipeline, [p.event for p in [*produced, *heavy, *again]]
    finally:
        pipeline.close()


def test_the_stores_equal_the_reference(run) -> None:
    pipeline, events = run
    expected = reference_notifications(events, known_users_only=True)
    # The workload must exercise the rules, or equality proves little.
    assert {g[0] for g in expected.values()} == {"like", "comment", "follow", "mention"}
    unfiltered = reference_notifications(events)
    assert any("ghost" in user for user, _ in unfiltered.keys() - expected.keys())
    per_user: dict[str, int] = {}
    for user, _ in expected:
        per_user[user] = per_user.get(user, 0) + 1
    assert max(per_user.values()) > NOTIFICATION_CAP

    deadline = time.monotonic() + HANG_GUARD_S
    while True:
        diff = store_differences(pipeline.session, pipeline.redis, pipeline.keys, expected)
        if not diff or time.monotonic() > deadline:
            break
        pipeline.assert_jobs_alive()
        time.sleep(2)
    assert diff[:20] == []
    assert python_errors(pipeline.stack.flink.rest_url, pipeline.job_ids["notifications"]) == []
