"""Which archive parts a rebuild reads, and the events of one part.

The jobs list the parts of a time window once, up front, and hand each worker whole
parts (coarse elements: a part holds thousands of events), so the per-element cost of
the runner is paid per part, not per event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from feedline.archive.store import Archive


@dataclass(frozen=True)
class PartRef:
    """One archive part and the topic role of its events."""

    role: str
    object_name: str


def list_parts(archive: Archive, topic_roles: Mapping[str, str], since: datetime | None,
               until: datetime | None) -> list[PartRef]:
    """Every part of the topics' partitions overlapping ``[since, until)``."""
    parts: list[PartRef] = []
    for topic, role in topic_roles.items():
        for partition in archive.partitions_in(topic, since, until):
            parts.extend(PartRef(role, name) for name in archive.part_names(partition))
    return parts


def in_window(event: Any, since: datetime | None, until: datetime | None) -> bool:
    """Whether the event's own time lies in ``[since, until)`` (None: unbounded)."""
    if since is None and until is None:
        return True
    moment = event.event_time_dt
    return (since is None or moment >= since) and (until is None or moment < until)
