"""Dead-letter inspect and replay on the real broker."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from feedline.rules.retention import TOO_LATE
from feedline.settings import KafkaSettings
from jobs.dlq import inspect_dlq, new_replay_group, replay_dlq
from jobs.localstack.kafka import ensure_topics
from pipelines.streaming.parse import Refusal, dead_letter
from schemas.event_contracts import InvalidEvent, encode_event, new_event

MOMENT = datetime(2026, 11, 1, 12, tzinfo=UTC)


@pytest.fixture
def dlq_kafka(stack, topic_factory):
    """Uploads/follows/engagements topics with their DLQs; DLQs deleted afterwards."""
    kafka = KafkaSettings(bootstrap_servers=stack.kafka.bootstrap_servers,
                          uploads_topic=topic_factory(2), follows_topic=topic_factory(1),
                          engagements_topic=topic_factory(1))
    dlqs = [kafka.dlq_topic(t) for t in kafka.event_topics]
    ensure_topics(kafka.bootstrap_servers, dict.fromkeys(dlqs, 1))
    yield kafka
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    try:
        admin.delete_topics(dlqs)
    finally:
        admin.close()


def _letters(kafka: KafkaSettings) -> list[bytes]:
    """Three dead letters: now valid, fixable by file, hopeless (non-JSON)."""
    topic = kafka.uploads_topic
    valid = encode_event(new_event("post_deleted", event_id="nowvalid0001", event_time=MOMENT,
                                   author_id="u1", post_id="p1"))
    broken = json.dumps({"event_id": "needsfix0001", "event_type": "post_deleted",
                         "event_time": "2026-11-01T12:00:00Z", "schema_version": 1,
                         "author_id": "u2"}).encode()  # post_id missing
    letters = []
    for offset, payload in enumerate((valid, broken, b"\x00garbage")):
        error = InvalidEvent("missing_field", "$.post_id is required")
        letters.append(dead_letter(topic, 0, offset, payload, error).encode())
    return letters


def _published(kafka: KafkaSettings) -> list[tuple[bytes, dict]]:
    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap_servers,
                             isolation_level="read_committed", enable_auto_commit=False)
    tps = [TopicPartition(kafka.uploads_topic, p)
           for p in consumer.partitions_for_topic(kafka.uploads_topic)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    ends = consumer.end_offsets(tps)
    out = []
    while any(consumer.position(tp) < ends[tp] for tp in tps):
        for records in consumer.poll(timeout_ms=1000).values():
            out.extend((r.key, json.loads(r.value)) for r in records)
    consumer.close()
    return out


def test_inspect_and_replay_publish_each_fixed_letter_once(dlq_kafka, tmp_path):
    kafka = dlq_kafka
    topic, dlq = kafka.uploads_topic, kafka.dlq_topic(kafka.uploads_topic)
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
    for letter in _letters(kafka):
        producer.send(dlq, value=letter)
    producer.flush()
    producer.close()
    group = new_replay_group()

    seen = inspect_dlq(kafka, topic, group_id=group)
    assert seen.total == {"missing_field": 3} and seen.pending == {"missing_field": 3}
    assert [s.dlq_offset for s in seen.samples] == [0, 1, 2]

    fix = {"event_id": "needsfix0001", "event_type": "post_deleted",
           "event_time": "2026-11-01T12:00:00Z", "schema_version": 1, "author_id": "u2",
           "post_id": "p2"}
    fix_lines = [json.dumps(fix), "not an event"]

    dry = replay_dlq(kafka, topic, "uploads", fix_lines=fix_lines, dry_run=True,
                     group_id=group)
    assert (dry.published, dry.fixed_from_file, len(dry.still_broken)) == (2, 1, 1)
    assert len(dry.bad_fixes) == 1
    assert _published(kafka) == []  # a dry run publishes nothing and commits nothing

    done = replay_dlq(kafka, topic, "uploads", fix_lines=fix_lines, group_id=group)
    assert (done.published, done.fixed_from_file, len(done.still_broken)) == (2, 1, 1)
    assert done.still_broken[0][1].startswith("unparseable")
    published = _published(kafka)
    assert sorted((key, event["event_id"]) for key, event in published) == [
        (b"u1", "nowvalid0001"), (b"u2", "needsfix0001")]

    again = replay_dlq(kafka, topic, "uploads", fix_lines=fix_lines, group_id=group)
    assert again.published == 0 and len(again.still_broken) == 1  # only the parked letter
    assert len(_published(kafka)) == 2, "a rerun never publishes twice"

    after = inspect_dlq(kafka, topic, group_id=group)
    assert sum(after.pending.values()) == 1
    assert after.pending == {"unparseable": 1}


def test_replay_keeps_a_too_late_letter_parked_while_the_bound_refuses_it(dlq_kafka):
    """A letter the jobs refused as too late (``feed.lateness_bound_s``) stays parked as
    ``too_late`` when replayed under a bound it still breaks; once the bound allows it
    (here: no bound), the same replay group publishes it, once."""
    kafka = dlq_kafka
    topic, dlq = kafka.uploads_topic, kafka.dlq_topic(kafka.uploads_topic)
    late = encode_event(new_event("post_deleted", event_id="toolate00001", event_time=MOMENT,
                                  author_id="u3", post_id="p3"))
    age_ms = int((datetime.now(UTC) - MOMENT).total_seconds() * 1000)
    refusal = Refusal(TOO_LATE, "arrived after the bound")
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
    producer.send(dlq, value=dead_letter(topic, 0, 7, late, refusal).encode())
    producer.flush()
    producer.close()
    group = new_replay_group()

    kept = replay_dlq(kafka, topic, "uploads", group_id=group, lateness_bound_ms=age_ms // 2)
    assert (kept.published, len(kept.still_broken)) == (0, 1)
    assert kept.still_broken[0][1].startswith(f"{TOO_LATE}: $.event_time: ")
    assert _published(kafka) == []
    parked = inspect_dlq(kafka, topic, group_id=group)
    assert parked.pending == {TOO_LATE: 1}, parked.pending

    allowed = replay_dlq(kafka, topic, "uploads", group_id=group,
                         lateness_bound_ms=age_ms * 2)
    assert (allowed.published, len(allowed.still_broken)) == (1, 0)
    assert [(key, event["event_id"]) for key, event in _published(kafka)] == [
        (b"u3", "toolate00001")]
