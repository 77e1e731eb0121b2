"""The quality gate: Great Expectations suites over archive partitions, with quarantine.

``run_gate`` reads the partitions of each topic overlapping ``[since, until)``, builds the
frames of ``pipelines.quality.frame`` and validates them with the suites derived from the
event JSON Schemas (``pipelines.quality.suites``) in an ephemeral GE context: one pandas
dataframe asset, validation definition and suite per suite, one run per suite per chunk of
partitions (rows carry their partition's window, so chunking changes no verdict). Failing
rows are collected through GE's ``unexpected_index_list`` (by ``__row``).

With ``quarantine=True`` the flagged records are moved aside, crash-safe: the bad records
and their reasons are written to ``quarantine/<topic>/dt=…/hr=…/<part>`` first, then each
affected part is rewritten without them under a new revision name, then the old part is
deleted. A crash in between leaves at worst duplicates (dropped by ``event_id``) and bad
records that the next gate run quarantines again. The quarantined partitions are validated
again and must pass.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from feedline.archive.layout import Partition
from feedline.archive.store import Archive
from feedline.settings import BatchSettings
from pipelines.quality.frame import build_frames
from pipelines.quality.quarantine import quarantine_rows
from pipelines.quality.validate import SuiteRunner, validate_frames

log = logging.getLogger("feedline.quality")

#: Partitions validated together in one run per suite (bounds memory; hours are small
#: except in a bulk load, and rows carry their own window, so chunking changes no verdict).
CHUNK_PARTITIONS = 48


@dataclass
class PartitionReport:
    """The gate's verdict on one archive partition (one topic, one hour)."""

    topic: str
    dt: str
    """Day, ``YYYY-MM-DD``."""
    hr: int
    """Hour of day, UTC."""
    records: int
    """Records validated (after dropping byte-identical repeats)."""
    passed: bool
    """True when every expectation passed (after quarantine, if it ran)."""
    failed_expectations: list[str] = field(default_factory=list)
    """``suite: expectation(column) xN`` for each expectation that failed on this partition."""
    bad_records: int = 0
    """Records flagged by at least one expectation."""
    quarantined: int = 0
    """Records moved to quarantine."""
    exact_duplicates: int = 0
    """Byte-identical repeats dropped before validation (re-archived batches)."""

    def line(self) -> str:
        """One aligned summary line."""
        verdict = "ok" if self.passed else "FAILED"
        extra = f"  quarantined {self.quarantined}" if self.quarantined else ""
        return (f"{self.topic:<24} dt={self.dt} hr={self.hr:02d}  {verdict:<6} "
                f"records {self.records:>9,}  bad {self.bad_records:>6,}{extra}")


@dataclass
class GateResult:
    """The gate's verdict on a window of the archive."""

    passed: bool
    """True when every partition passed (or its bad records were quarantined)."""
    partitions: list[PartitionReport]
    quarantined: int
    """Records moved aside."""
    seconds: float = 0.0
    """Wall time of the whole gate run."""

    def summary(self) -> str:
        """A human-readable report: one line per partition, failures spelled out."""
        lines = []
        for report in self.partitions:
            lines.append(report.line())
            lines.extend(f"    {failure}" for failure in report.failed_expectations)
        records = sum(r.records for r in self.partitions)
        verdict = "PASSED" if self.passed else "FAILED"
        lines.append(f"quality gate {verdict}: {len(self.partitions)} partition(s), "
                     f"{records:,} records, {self.quarantined:,} quarantined, "
                     f"{self.seconds:.1f}s")
        return "\n".join(lines)


def _chunks(partitions: list[Partition]) -> Iterator[list[Partition]]:
    """Consecutive partitions, ``CHUNK_PARTITIONS`` at a time."""
    for start in range(0, len(partitions), CHUNK_PARTITIONS):
        yield partitions[start:start + CHUNK_PARTITIONS]


def _check(archive: Archive, role: str, topic: str, partitions: list[Partition],
           runner: SuiteRunner, quarantine: bool) -> list[PartitionReport]:
    """Validate (and maybe quarantine) one chunk of partitions of a topic."""
    rows = ((p, name, line) for p in partitions for name, line in archive.partition_lines(p))
    frames = build_frames(role, rows)
    outcome = validate_frames(runner, frames, label=topic)
    counts: dict[Partition, int] = {}
    for source in frames.sources:
        counts[source.partition] = counts.get(source.partition, 0) + 1
    reports = {}
    for p in partitions:
        failures = outcome.failures.get(p, {})
        bad = outcome.bad_rows_in(p)
        reports[p] = PartitionReport(
            topic=topic, dt=p.day.isoformat(), hr=p.hour, records=counts.get(p, 0),
            passed=not failures and not outcome.table_failures,
            failed_expectations=[f"{name} x{n}" for name, n in sorted(failures.items())]
            + list(outcome.table_failures),
            bad_records=len(bad), exact_duplicates=frames.exact_duplicates.get(p, 0))
    if quarantine and outcome.bad_rows:
        moved = quarantine_rows(archive, frames, outcome.bad_rows)
        again = validate_frames(
            runner,
            build_frames(role, ((p, n, line) for p in moved for n, line
                                in archive.partition_lines(p))),
            label=f"{topic} after quarantine")
        for p, n in moved.items():
            report = reports[p]
            report.quarantined = n
            report.passed = not again.failures.get(p) and not again.table_failures
            if not report.passed:
                report.failed_expectations.append("still failing after quarantine")
    return [reports[p] for p in partitions]


def run_gate(settings: BatchSettings, topics: Sequence[str], since: datetime | None,
             until: datetime | None, *, quarantine: bool = False,
             results_dir: Path | None = None, root: str | None = None) -> GateResult:
    """Validate the archive partitions of ``topics`` overlapping ``[since, until)``.

    ``topics`` are topic names (their roles come from ``settings.kafka.topic_roles()``);
    ``root`` overrides ``settings.archive_prefix``. With ``results_dir``, validation results
    (JSON) and Data Docs (HTML) are written there.
    """
    started = time.monotonic()
    roles = settings.kafka.topic_roles()
    unknown = [t for t in topics if t not in roles]
    if unknown:
        raise ValueError(f"not event topics: {unknown}; known: {sorted(roles)}")
    archive = Archive.open(settings.storage, root or settings.archive_prefix)
    runner = SuiteRunner(results_dir)
    reports: list[PartitionReport] = []
    for topic in topics:
        partitions = archive.partitions_in(topic, since, until)
        log.info("quality gate: %s, %d partition(s)", topic, len(partitions))
        for chunk in _chunks(partitions):
            reports.extend(_check(archive, roles[topic], topic, chunk, runner, quarantine))
    runner.finish()
    result = GateResult(
        passed=all(r.passed for r in reports), partitions=reports,
        quarantined=sum(r.quarantined for r in reports),
        seconds=time.monotonic() - started)
    if results_dir is not None:
        (results_dir / "summary.json").write_text(json.dumps(
            {"passed": result.passed, "quarantined": result.quarantined,
             "seconds": round(result.seconds, 3),
             "partitions": [r.__dict__ for r in reports]}, indent=2))
    return result
