"""The quality gate: Great Expectations suites over archive partitions, with quarantine.

``run_gate`` validates every partition of the given topics in a time window with suites
derived from the event JSON Schemas (``pipelines/quality/suites.py``). With
``quarantine=True`` the rows the suites flag are moved aside (``quarantine/<topic>/dt=…/hr=…``
in the archive bucket, with their reasons) and the partition is rewritten without them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from feedline.settings import BatchSettings


@dataclass
class PartitionReport:
    """The gate's verdict on one archive partition (one topic, one hour)."""

    topic: str
    dt: str
    """Day, ``YYYY-MM-DD``."""
    hr: int
    """Hour of day, UTC."""
    records: int
    """Records validated (after dropping exact duplicate records)."""
    passed: bool
    """True when every expectation passed (after quarantine, if it ran)."""
    failed_expectations: list[str] = field(default_factory=list)
    """``suite: expectation(column)`` of each failed expectation, with its failing count."""
    bad_records: int = 0
    """Records flagged by at least one expectation."""
    quarantined: int = 0
    """Records moved to quarantine."""
    exact_duplicates: int = 0
    """Byte-identical repeats dropped before validation (re-archived batches)."""


@dataclass
class GateResult:
    """The gate's verdict on a window of the archive."""

    passed: bool
    """True when every partition passed (or its bad records were quarantined)."""
    partitions: list[PartitionReport]
    quarantined: int
    """Records moved aside."""

    def summary(self) -> str:
        """A human-readable report, one line per partition."""
        raise NotImplementedError


def run_gate(settings: BatchSettings, topics: Sequence[str], since: datetime | None,
             until: datetime | None, *, quarantine: bool = False,
             results_dir: Path | None = None, root: str | None = None) -> GateResult:
    """Validate the archive partitions of ``topics`` overlapping ``[since, until)``."""
    raise NotImplementedError
