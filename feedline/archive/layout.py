"""Where archived events live and how a part object is encoded.

An archived event lives at ``<prefix>/<topic>/dt=YYYY-MM-DD/hr=HH/<part>``. The partition is
the hour of the event's own ``event_time`` (UTC), so a rebuild of a time window reads exactly
the partitions of that window. A part is gzip-compressed JSON Lines: one event per line, as
the producer encoded it, and every event carries ``event_type`` and ``schema_version``, so a
line can be parsed with the schema it was written with.

Part names come from the Kafka coordinates of the batch that produced them
(``p<partition>-<first offset>-<last offset>.jsonl.gz``): re-archiving the same batch after a
crash writes the same name, and a differently cut batch leaves duplicates that readers drop
by ``event_id``. A part the quality gate rewrote without its quarantined records carries a
revision (``….r1.jsonl.gz``).

Beside each part written since Kafka stamps records with the broker's append time, its
*arrivals* (``….arrivals.json.gz``: a gzip JSON list of ``[offset, Kafka timestamp ms]``,
one per line of the part, in the same order) keep what the line itself does not: when each
record reached Kafka and where it sat in its partition (the arrival time of
``feedline.rules.retention``). It is uploaded before its part, so every part has one
unless it was archived before arrivals existed.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

PART_SUFFIX = ".jsonl.gz"
ARRIVALS_SUFFIX = ".arrivals.json.gz"
_PART = re.compile(
    r"^p(?P<partition>\d{3})-(?P<first>\d{12})-(?P<last>\d{12})(?:\.r(?P<rev>\d+))?\.jsonl\.gz$"
)
_HOUR = timedelta(hours=1)


@dataclass(frozen=True, order=True)
class Partition:
    """One hour of one topic."""

    topic: str
    day: date
    hour: int

    def prefix(self, root: str) -> str:
        """The object-name prefix of this partition under archive prefix ``root``."""
        return f"{root}/{self.topic}/dt={self.day.isoformat()}/hr={self.hour:02d}/"

    @property
    def start(self) -> datetime:
        """First instant of the partition window (inclusive, UTC)."""
        return datetime(self.day.year, self.day.month, self.day.day, self.hour, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """End of the partition window (exclusive, UTC)."""
        return self.start + _HOUR


def partition_of(topic: str, event_time: datetime) -> Partition:
    """The partition an event with this (aware) event time belongs to."""
    utc = event_time.astimezone(UTC)
    return Partition(topic, utc.date(), utc.hour)


def partitions_between(topic: str, since: datetime, until: datetime) -> Iterator[Partition]:
    """Partitions overlapping ``[since, until)``, oldest first."""
    start = since.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    end = until.astimezone(UTC)
    while start < end:
        yield Partition(topic, start.date(), start.hour)
        start += _HOUR


def parse_partition(root: str, object_name: str) -> Partition | None:
    """The partition of an archived object name, or None when the name is not one."""
    rest = object_name.removeprefix(f"{root}/")
    parts = rest.split("/")
    if rest == object_name or len(parts) != 4:
        return None
    topic, dt, hr, _ = parts
    if not (dt.startswith("dt=") and hr.startswith("hr=")):
        return None
    try:
        return Partition(topic, date.fromisoformat(dt[3:]), int(hr[3:]))
    except ValueError:
        return None


def part_name(kafka_partition: int, first_offset: int, last_offset: int) -> str:
    """The object name (last path segment) of a part cut from these Kafka offsets."""
    return f"p{kafka_partition:03d}-{first_offset:012d}-{last_offset:012d}{PART_SUFFIX}"


def part_offsets(name: str) -> tuple[int, int, int] | None:
    """``(kafka partition, first offset, last offset)`` of a part name, or None."""
    match = _PART.match(name.rsplit("/", 1)[-1])
    if match is None:
        return None
    return int(match["partition"]), int(match["first"]), int(match["last"])


def revised_part_name(name: str) -> str:
    """The name of a part rewritten from part ``name`` (the quality gate's quarantine).

    ``p001-…-….jsonl.gz`` becomes ``p001-…-….r1.jsonl.gz``, ``….r1.jsonl.gz`` becomes
    ``….r2.jsonl.gz``; the Kafka coordinates stay readable by ``part_offsets``.
    """
    short = name.rsplit("/", 1)[-1]
    match = _PART.match(short)
    revision = int(match["rev"] or 0) + 1 if match else 1
    stem = short.removesuffix(PART_SUFFIX)
    if match and match["rev"]:
        stem = stem.rsplit(".r", 1)[0]
    return f"{stem}.r{revision}{PART_SUFFIX}"


def encode_part(lines: Iterable[bytes]) -> bytes:
    """Gzip JSON Lines from already-encoded records (each one JSON document, no newline)."""
    body = b"".join(line.rstrip(b"\n") + b"\n" for line in lines)
    return gzip.compress(body, compresslevel=6, mtime=0)


def decode_part(blob: bytes) -> Iterator[bytes]:
    """The records of a part, in written order."""
    for line in gzip.decompress(blob).split(b"\n"):
        if line:
            yield line


#: A record's arrival: ``(Kafka offset, Kafka record timestamp ms)``.
Arrival = tuple[int, int]


def arrivals_name(part: str) -> str:
    """The arrivals object beside part ``part`` (a full object name or a short one)."""
    return part.removesuffix(PART_SUFFIX) + ARRIVALS_SUFFIX


def encode_arrivals(arrivals: Sequence[Arrival]) -> bytes:
    """Gzip JSON of ``[[offset, timestamp ms], …]``."""
    body = json.dumps([[offset, at] for offset, at in arrivals], separators=(",", ":"))
    return gzip.compress(body.encode(), compresslevel=6, mtime=0)


def decode_arrivals(blob: bytes) -> list[Arrival]:
    """The arrivals of a part, in its lines' order."""
    return [(int(offset), int(at)) for offset, at in json.loads(gzip.decompress(blob))]
