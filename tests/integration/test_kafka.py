"""Kafka: the broker is real — topics exist, records round-trip with kafka-python."""

from __future__ import annotations

import json

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from feedline.settings import StackSettings


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
        key_serializer=str.encode,
        value_serializer=lambda v: json.dumps(v).encode(),
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
        value_deserializer=lambda b: json.loads(b),
    )
    consumer.assign([TopicPartition(topic, p) for p in range(3)])
    received = [msg.value for _, msg in zip(range(len(sent)), consumer, strict=False)]
    consumer.close()

    assert sorted(r["seq"] for r in received) == list(range(200))
    for author in {r["author_id"] for r in sent}:
        seqs = [r["seq"] for r in received if r["author_id"] == author]
        assert seqs == sorted(seqs), f"order per key broken for {author}"
