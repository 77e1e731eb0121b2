"""Kafka: the broker is real — topics exist, records round-trip with kafka-python."""

from __future__ import annotations

import time
import uuid

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.serializer import DefaultSerializer, JsonSerializer

from feedline.settings import StackSettings
from jobs.localstack.kafka import TOPIC_CONFIGS, ensure_topics


def test_feed_topics_and_dlqs_exist_with_configured_partitions(stack: StackSettings) -> None:
    admin = KafkaAdminClient(bootstrap_servers=stack.kafka.bootstrap_servers)
    try:
        described = {t["name"]: t for t in admin.describe_topics()}
    finally:
        admin.close()
    for topic in stack.kafka.event_topics:
        assert len(described[topic]["partitions"]) == stack.kafka.partitions
        assert len(described[stack.kafka.dlq_topic(topic)]["partitions"]) == 1


def test_produce_and_consume_round_trip_keeps_order_per_key(
    stack: StackSettings, topic_factory
) -> None:
    topic = topic_factory(partitions=3)
    producer = KafkaProducer(
        bootstrap_servers=stack.kafka.bootstrap_servers,
        acks="all",
        key_serializer=DefaultSerializer(),
        value_serializer=JsonSerializer(),
    )
    sent = [{"author_id": f"u{i % 4}", "seq": i} for i in range(200)]
    for record in sent:
        producer.send(topic, key=record["author_id"], value=record)
    producer.flush()
    producer.close()

    consumer = KafkaConsumer(
        bootstrap_servers=stack.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=300_000,  # a hang guard: every record was acked before
        value_deserializer=JsonSerializer(),
    )
    consumer.assign([TopicPartition(topic, p) for p in range(3)])
    received = [msg.value for _, msg in zip(range(len(sent)), consumer, strict=False)]
    consumer.close()

    assert sorted(r["seq"] for r in received) == list(range(200))
    for author in {r["author_id"] for r in sent}:
        seqs = [r["seq"] for r in received if r["author_id"] == author]
        assert seqs == sorted(seqs), f"order per key broken for {author}"


def test_records_carry_the_brokers_append_time(stack: StackSettings) -> None:
    """The stack's topics and a topic made before ``TOPIC_CONFIGS`` (altered by
    ``ensure_topics``) stamp records with the broker's clock, not the producer's."""
    bootstrap = stack.kafka.bootstrap_servers
    older = f"ts_{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(older, num_partitions=1, replication_factor=1)])
        assert ensure_topics(bootstrap, {older: 1}) == []
        names = [older, *stack.kafka.event_topics,
                 *(stack.kafka.dlq_topic(t) for t in stack.kafka.event_topics)]
        described = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name, list(TOPIC_CONFIGS))
             for name in names], config_filter="all")["topic"]
        for name in names:
            assert {key: described[name][key]["value"] for key in TOPIC_CONFIGS} \
                == TOPIC_CONFIGS, name

        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
        before_ms = int(time.time() * 1000)
        producer.send(older, b"{}", timestamp_ms=1_000).get(timeout=60)
        producer.close()
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                 consumer_timeout_ms=60_000)
        partition = TopicPartition(older, 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        record = next(iter(consumer))
        consumer.close()
        assert record.timestamp_type == 1  # LogAppendTime
        # The broker's clock (the same machine's), not the 1970 time the producer set.
        assert record.timestamp >= before_ms - 60_000
    finally:
        admin.delete_topics([older])
        admin.close()
