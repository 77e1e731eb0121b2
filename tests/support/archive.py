"""Write produced events straight into an archive prefix (tests where the archiver is not
the thing under test), one part per topic hour, in produced order."""

from __future__ import annotations

from collections.abc import Iterable

from feedline.archive.layout import Partition, part_name, partition_of
from feedline.archive.store import Archive
from feedline.settings import KafkaSettings
from feedline.workload import ProducedEvent
from jobs.load import topic_for
from schemas.event_contracts import encode_event


def write_archive(archive: Archive, kafka: KafkaSettings, produced: Iterable[ProducedEvent],
                  extra: Iterable[tuple[str, bytes]] = (), *, part_lines: int = 50_000) -> int:
    """Archive events (plus raw ``(role, line)`` records in the first hour); returns parts.

    Parts hold at most ``part_lines`` records, as the archiver cuts them by size.
    """
    groups: dict[Partition, list[bytes]] = {}
    first: Partition | None = None
    for item in produced:
        partition = partition_of(topic_for(kafka, item.role), item.event.event_time_dt)
        groups.setdefault(partition, []).append(encode_event(item.event))
        first = first or partition
    for role, line in extra:
        assert first is not None
        topic = topic_for(kafka, role)
        groups.setdefault(Partition(topic, first.day, first.hour), []).append(line)
    parts = 0
    offset = 0
    for partition, lines in sorted(groups.items()):
        for start in range(0, len(lines), part_lines):
            cut = lines[start:start + part_lines]
            archive.write_part(partition, part_name(0, offset, offset + len(cut) - 1), cut)
            offset += len(cut)
            parts += 1
    return parts
