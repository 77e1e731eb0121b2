"""Consumer-group lag of the streaming jobs (Flink commits offsets on checkpoints)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from feedline.settings import KafkaSettings


@dataclass(frozen=True)
class PartitionLag:
    """One partition of a group's topics: the group's committed offset against the end."""

    group: str
    topic: str
    partition: int
    committed: int | None
    """None when the group never committed on this partition."""
    end: int

    @property
    def lag(self) -> int:
        """Records not yet committed by the group (all of them when it never committed)."""
        return max(0, self.end - (self.committed or 0))


def job_topics(kafka: KafkaSettings) -> dict[str, list[str]]:
    """The topics each streaming job (``jobs.specs.JOBS``) reads."""
    from jobs.specs import JOBS

    return {name: spec.topics(kafka) for name, spec in JOBS.items()}


def partition_lags(admin: KafkaAdminClient, consumer: KafkaConsumer, group_id: str,
                   topics: Sequence[str]) -> list[PartitionLag]:
    """Committed and end offset of every partition of ``topics`` for ``group_id``."""
    partitions = [
        TopicPartition(topic, p)
        for topic in topics
        for p in sorted(consumer.partitions_for_topic(topic) or ())
    ]
    if not partitions:
        return []
    ends = consumer.end_offsets(partitions)
    committed = admin.list_group_offsets({group_id: partitions}).get(group_id, {})
    rows = []
    for tp in partitions:
        done = committed.get(tp)
        offset = done.offset if done is not None and done.offset >= 0 else None
        rows.append(PartitionLag(group_id, tp.topic, tp.partition, offset, ends[tp]))
    return rows


def group_lag(kafka: KafkaSettings, group_id: str, topics: list[str]) -> int:
    """Records in ``topics`` not yet committed by ``group_id`` (all of them if none)."""
    admin = KafkaAdminClient(**kafka.client_options(), client_id="feedline-lag")
    consumer = KafkaConsumer(**kafka.client_options(), client_id="feedline-lag")
    try:
        return sum(row.lag for row in partition_lags(admin, consumer, group_id, topics))
    finally:
        consumer.close()
        admin.close()
