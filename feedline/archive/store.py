"""Reading and writing the archive with google-cloud-storage.

A part is uploaded in one request, so it is visible only once it is complete: a crash
mid-upload leaves nothing behind. Readers de-duplicate by ``event_id`` (a re-archived batch
may repeat events) and can return raw lines for the quality gate.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from google.api_core.exceptions import NotFound
from google.cloud import storage

from feedline.archive.layout import (
    PART_SUFFIX,
    Arrival,
    Partition,
    arrivals_name,
    decode_arrivals,
    decode_part,
    encode_arrivals,
    encode_part,
    parse_partition,
    partitions_between,
)
from feedline.rules.retention import line_too_late
from feedline.settings import StorageSettings
from feedline.stores.object_store import storage_client


class MissingArrivals(RuntimeError):
    """A part without arrivals (archived before they were kept): no lateness bound applies."""

    def __init__(self, object_name: str) -> None:
        super().__init__(
            f"{object_name} has no arrivals (archived before the archive kept them): the "
            "lateness bound (feed.lateness_bound_s) cannot be applied to its events; "
            "rebuild without the bound, or from parts archived since")
        self.object_name = object_name


@dataclass
class Archive:
    """The event archive: a bucket and an object prefix."""

    bucket: storage.Bucket
    root: str = "events"

    @classmethod
    def open(cls, settings: StorageSettings, root: str = "events") -> Archive:
        """The archive in the configured archive bucket."""
        return cls(storage_client(settings).bucket(settings.archive_bucket), root)

    def write_part(self, partition: Partition, name: str, lines: Iterable[bytes],
                   arrivals: Sequence[Arrival] | None = None) -> str:
        """Upload one complete part; returns its object name.

        ``arrivals``, one per line, are uploaded first when given.
        """
        object_name = partition.prefix(self.root) + name
        if arrivals is not None:
            self.bucket.blob(arrivals_name(object_name)).upload_from_string(
                encode_arrivals(arrivals), content_type="application/gzip", timeout=60)
        blob = self.bucket.blob(object_name)
        blob.upload_from_string(encode_part(lines), content_type="application/gzip",
                                timeout=60)
        return object_name

    def part_names(self, partition: Partition) -> list[str]:
        """Object names of the parts in a partition, sorted."""
        prefix = partition.prefix(self.root)
        return sorted(b.name for b in self.bucket.list_blobs(prefix=prefix)
                      if b.name.endswith(PART_SUFFIX))

    def partitions(self, topic: str) -> list[Partition]:
        """Every partition of a topic that holds at least one part, oldest first."""
        found = {parse_partition(self.root, b.name)
                 for b in self.bucket.list_blobs(prefix=f"{self.root}/{topic}/")}
        return sorted(p for p in found if p is not None)

    def partitions_in(self, topic: str, since: datetime | None,
                      until: datetime | None) -> list[Partition]:
        """Partitions of ``topic`` overlapping ``[since, until)``; None means unbounded."""
        if since is not None and until is not None:
            wanted = set(partitions_between(topic, since, until))
            return [p for p in self.partitions(topic) if p in wanted]
        return [p for p in self.partitions(topic)
                if (since is None or p.end > since) and (until is None or p.start < until)]

    def read_lines(self, object_name: str) -> list[bytes]:
        """The raw records of one part."""
        return list(decode_part(self.bucket.blob(object_name).download_as_bytes(timeout=60)))

    def read_arrivals(self, object_name: str) -> list[Arrival] | None:
        """The arrivals of part ``object_name``, one per line.

        None for a part archived before arrivals were kept.
        """
        try:
            blob = self.bucket.blob(arrivals_name(object_name)).download_as_bytes(timeout=60)
        except NotFound:
            return None
        return decode_arrivals(blob)

    def admitted_lines(self, object_name: str,
                       lateness_bound_ms: int | None) -> tuple[list[bytes], int]:
        """The part's lines an engine applies under a lateness bound, and how many are too late.

        Each line is judged by ``feedline.rules.retention.too_late`` on its arrival. With no
        bound, every line. ``MissingArrivals`` when a bound is set and the part was
        archived before arrivals were kept: its lines cannot be judged.
        """
        lines = self.read_lines(object_name)
        if lateness_bound_ms is None:
            return lines, 0
        arrivals = self.read_arrivals(object_name)
        if arrivals is None or len(arrivals) != len(lines):
            raise MissingArrivals(object_name)
        admitted = [line for line, (_, arrival_ms) in zip(lines, arrivals, strict=True)
                    if not line_too_late(line, arrival_ms, lateness_bound_ms)]
        return admitted, len(lines) - len(admitted)

    def delete_part(self, object_name: str) -> None:
        """Delete a part, then its arrivals (a crash between leaves arrivals no part reads)."""
        self.bucket.blob(object_name).delete()
        try:
            self.bucket.blob(arrivals_name(object_name)).delete()
        except NotFound:
            pass

    def partition_lines(self, partition: Partition) -> Iterator[tuple[str, bytes]]:
        """``(object name, raw record)`` for every record of a partition, duplicates kept."""
        for name in self.part_names(partition):
            for line in self.read_lines(name):
                yield name, line

    def partition_records(self, partition: Partition) -> list[dict[str, Any]]:
        """The JSON records of a partition, de-duplicated by ``event_id`` (first one wins).

        Records that are not JSON objects with an ``event_id`` are kept as they are, so the
        quality gate sees them.
        """
        seen: set[str] = set()
        out: list[dict[str, Any]] = []
        for _, line in self.partition_lines(partition):
            try:
                record = json.loads(line)
            except ValueError:
                out.append({"_raw": line.decode("utf-8", "replace")})
                continue
            if not isinstance(record, dict):
                out.append({"_raw": line.decode("utf-8", "replace")})
                continue
            event_id = record.get("event_id")
            if isinstance(event_id, str):
                if event_id in seen:
                    continue
                seen.add(event_id)
            out.append(record)
        return out

