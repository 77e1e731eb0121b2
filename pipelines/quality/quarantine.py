"""Moving flagged records out of archive partitions, crash-safe.

For each part holding a flagged record: write the flagged records with their reasons to
``quarantine/<topic>/dt=…/hr=…/<part>`` (beside the archive prefix), then the part without
them under a new revision name, then delete the old part. Every step is one complete
object upload or delete, so a crash at any point loses nothing: a rerun finds the old part
(or its duplicate records, dropped by ``event_id``) and quarantines again, overwriting the
same quarantine object. The new revision keeps the arrivals of the records it keeps.
"""

from __future__ import annotations

import base64
import json
import logging

from feedline.archive.layout import Partition, revised_part_name
from feedline.archive.store import Archive
from pipelines.quality.frame import RecordFrames

log = logging.getLogger("feedline.quality")


def quarantine_root(root: str) -> str:
    """The quarantine prefix beside archive prefix ``root`` (``a/events`` -> ``a/quarantine``)."""
    parent, _, _ = root.rpartition("/")
    return f"{parent}/quarantine" if parent else "quarantine"


def quarantine_record(object_name: str, line: bytes, reasons: list[str]) -> bytes:
    """One JSON Lines record of a quarantine object: the exact bytes and why they were moved."""
    return json.dumps({
        "reasons": reasons,
        "source_object": object_name,
        "record": line.decode("utf-8", "replace"),
        "record_b64": base64.b64encode(line).decode("ascii"),
    }, separators=(",", ":"), sort_keys=True).encode()


def quarantine_rows(archive: Archive, frames: RecordFrames,
                    bad_rows: dict[int, list[str]]) -> dict[Partition, int]:
    """Move the flagged rows' records (every copy of them) aside; returns records per partition."""
    flagged: dict[Partition, dict[bytes, list[str]]] = {}
    for row, reasons in bad_rows.items():
        source = frames.sources[row]
        flagged.setdefault(source.partition, {})[source.line] = reasons
    quarantine = Archive(archive.bucket, quarantine_root(archive.root))
    moved: dict[Partition, int] = {}
    for partition, lines in flagged.items():
        for name in archive.part_names(partition):
            records = archive.read_lines(name)
            kept = [n for n, line in enumerate(records) if line not in lines]
            if len(kept) == len(records):
                continue
            arrivals = archive.read_arrivals(name)
            short = name.rsplit("/", 1)[-1]
            quarantine.write_part(partition, short, (
                quarantine_record(name, line, lines[line]) for line in records if line in lines))
            if kept:
                archive.write_part(partition, revised_part_name(short),
                                   [records[n] for n in kept],
                                   None if arrivals is None else [arrivals[n] for n in kept])
            archive.delete_part(name)
            log.info("quarantined %d record(s) of %s", len(records) - len(kept), name)
        moved[partition] = len(lines)
    return moved
