"""Consumer-group lag of the streaming jobs (Flink commits offsets on checkpoints)."""

from __future__ import annotations

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from feedline.settings import KafkaSettings


def group_lag(kafka: KafkaSettings, group_id: str, topics: list[str]) -> int:
    """Records in ``topics`` not yet committed by ``group_id`` (all of them if none)."""
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers, client_id="feedline-lag")
    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, client_id="feedline-lag")
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        ends = consumer.end_offsets(partitions)
        committed = admin.list_group_offsets({group_id: partitions}).get(group_id, {})
        lag = 0
        for tp in partitions:
            done = committed.get(tp)
            position = done.offset if done is not None and done.offset >= 0 else 0
            lag += max(0, ends[tp] - position)
        return lag
    finally:
        consumer.close()
        admin.close()
