"""Archive progress: the archiver group's committed offsets against the topics' ends."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition

from feedline.settings import KafkaSettings


@dataclass(frozen=True)
class PartitionLag:
    """Archive progress of one Kafka partition."""

    topic: str
    partition: int
    committed: int | None
    end: int

    @property
    def lag(self) -> int:
        """Records not yet archived (all of them when nothing was committed)."""
        return max(0, self.end - (self.committed or 0))


def archive_lag(kafka: KafkaSettings, topics: Sequence[str],
                group_id: str = "feedline-archiver") -> list[PartitionLag]:
    """Committed offset, end offset and lag of every partition of ``topics``."""
    consumer = KafkaConsumer(**kafka.client_options(), group_id=group_id,
                             enable_auto_commit=False, client_id=f"{group_id}-status")
    try:
        tps = [TopicPartition(t, p) for t in topics
               for p in sorted(consumer.partitions_for_topic(t) or ())]
        ends = consumer.end_offsets(tps)
        rows = []
        for tp in tps:
            committed = consumer.committed(tp)
            rows.append(PartitionLag(tp.topic, tp.partition, committed, ends[tp]))
        return rows
    finally:
        consumer.close(autocommit=False)
