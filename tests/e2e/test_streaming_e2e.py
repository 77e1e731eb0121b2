"""Generator -> Kafka -> both PyFlink jobs on the local cluster -> CQL store and Redis,
compared exactly with the reference model computed from the same events; broken
records land in the dead-letter topics with their reason and source offset.

At parallelism 1 and 2 (two subtasks of every operator, writers included, spread over the
local cluster's two TaskManager processes)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from feedline.settings import FeedSettings, StackSettings
from feedline.workload import Workload, WorkloadSpec
from jobs.load import produce
from jobs.sandbox import Sandbox, open_sandbox
from schemas.event_contracts import encode_event, new_event
from tests.support.pipeline import events_of, wait_converged
from tests.support.reference import reference_for
from tests.support.waiting import HANG_GUARD_S

FEED = FeedSettings(celebrity_threshold=25, follow_merge_limit=4, timeline_cap=12)
SPEC = WorkloadSpec(users=150, posts=160, mean_followers=10, max_followers=40,
                    likes_per_post=3, comments_per_post=1, post_delete_share=0.05,
                    unfollow_share=0.05, seed=7)


def broken_records() -> list[tuple[str, bytes, str]]:
    """(role, raw bytes, expected reason) of records that must become dead letters."""
    follow = encode_event(new_event("follow", follower_id="a", followee_id="b"))
    like = json.loads(encode_event(new_event("like", user_id="a", post_id="p")))
    missing = json.loads(follow)
    del missing["follower_id"]
    return [
        ("uploads", b"{not json", "unparseable"),
        ("uploads", follow, "wrong_topic"),
        ("follows", json.dumps({**json.loads(follow), "schema_version": 99}).encode(),
         "unknown_schema_version"),
        ("follows", json.dumps(missing).encode(), "missing_field"),
        ("engagements", json.dumps({**like, "post_id": "bad id!"}).encode(), "invalid_field"),
        ("engagements", b"[1, 2]", "not_an_object"),
        ("engagements", json.dumps({**like, "pad": "x" * 70_000}).encode(), "oversized"),
    ]


@pytest.fixture(scope="module", params=[1, 2], ids=["parallelism-1", "parallelism-2"])
def run(stack: StackSettings, request: pytest.FixtureRequest
        ) -> Iterator[tuple[Sandbox, list, dict]]:
    flink = stack.flink.model_copy(update={"parallelism": request.param})
    pipeline = open_sandbox(stack, FEED, flink)
    try:
        pipeline.deploy_all(("fanout", "counters"))
        produced = list(Workload(SPEC).events())
        kafka = pipeline.streaming.kafka
        topic = {"uploads": kafka.uploads_topic, "follows": kafka.follows_topic,
                 "engagements": kafka.engagements_topic}
        raw = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all",
                            max_request_size=2_000_000)
        positions = {}
        half = len(produced) // 2
        produce(kafka, produced[:half])
        for role, payload, reason in broken_records():
            meta = raw.send(topic[role], payload).get(timeout=HANG_GUARD_S)
            positions[(topic[role], meta.partition, meta.offset)] = (reason, payload)
        raw.close()
        produce(kafka, produced[half:])
        yield pipeline, events_of(produced), positions
    finally:
        pipeline.close()


def test_stores_equal_the_reference_model(run) -> None:
    pipeline, events, _ = run
    expected = reference_for(events, FEED)
    # The workload must exercise the rules, or equality proves little.
    assert expected.celebrities, "no author crossed the celebrity threshold"
    assert any(len(t) > FEED.timeline_cap for t in expected.timelines.values())
    assert expected.deleted_posts and expected.post_counters
    assert wait_converged(pipeline, expected) == []


def test_broken_records_reach_the_dead_letter_topics_with_reasons(run) -> None:
    pipeline, _, positions = run
    kafka = pipeline.streaming.kafka
    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap_servers,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=int(HANG_GUARD_S * 1000),
                             fetch_max_bytes=4_000_000,
                             max_partition_fetch_bytes=4_000_000)
    consumer.assign([TopicPartition(kafka.dlq_topic(t), 0) for t in kafka.event_topics])
    letters = {}
    for message in consumer:
        letter = json.loads(message.value)
        letters[(letter["topic"], letter["partition"], letter["offset"])] = letter
        if len(letters) >= len(positions):
            break
    consumer.close()
    assert set(letters) == set(positions)
    for position, (reason, payload) in positions.items():
        letter = letters[position]
        assert letter["reason"] == reason, letter
        assert base64.b64decode(letter["payload_b64"]) == payload
        assert letter["detail"]
