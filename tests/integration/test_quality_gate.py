"""The quality gate on the real object store: bad records caught, quarantined, counted."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from feedline.archive.layout import (
    arrivals_name,
    part_name,
    partition_of,
    revised_part_name,
)
from feedline.archive.store import Archive
from feedline.settings import BatchSettings, StackSettings
from feedline.workload import Workload, WorkloadSpec
from jobs.feedctl.main import main as feedctl
from pipelines.quality.gate import run_gate
from pipelines.quality.quarantine import quarantine_root
from schemas.event_contracts import encode_event

SPEC = WorkloadSpec(users=80, posts=40, mean_followers=5, max_followers=20, seed=11)


def _settings(stack: StackSettings, root: str) -> BatchSettings:
    return BatchSettings(kafka=stack.kafka, storage=stack.storage, archive_prefix=root)


def _write_workload(archive: Archive, topic: str, role: str) -> dict[str, list[bytes]]:
    """The workload's events of ``role`` written as parts by event hour; lines by partition."""
    by_partition: dict = {}
    for item in Workload(SPEC).events():
        if item.role == role:
            p = partition_of(topic, item.event.event_time_dt)
            by_partition.setdefault(p, []).append(encode_event(item.event))
    for p, lines in by_partition.items():
        archive.write_part(p, part_name(0, 0, len(lines) - 1), lines)
    return by_partition


def _bad_uploads(good: list[bytes], hour_start: datetime) -> list[bytes]:
    """One of each kind of bad record, built from good uploads of the same hour."""
    first = json.loads(good[0])
    created = next(json.loads(line) for line in good if b"post_created" in line)
    wrong_enum = dict(created, event_id="badenum0001",
                      media=[dict(created["media"][0], content_type="image/gif")])
    malformed_id = dict(created, event_id="bad id!")
    outside = dict(created, event_id="outside0001",
                   event_time=(hour_start + timedelta(hours=3)).isoformat().replace("+00:00",
                                                                                     "Z"))
    conflicting = dict(first, post_id="someotherpost")  # same event_id, different content
    return [json.dumps(r).encode() for r in (wrong_enum, malformed_id, outside, conflicting)] + [
        b"this is not json"]


def test_gate_catches_bad_records_and_quarantine_makes_the_partition_pass(
        stack, object_prefix, tmp_path):
    root = f"{object_prefix}events"
    settings = _settings(stack, root)
    topic = stack.kafka.uploads_topic
    archive = Archive.open(stack.storage, root)
    written = _write_workload(archive, topic, "uploads")
    target = sorted(written)[0]
    good = written[target]
    bad = _bad_uploads(good, target.start)
    # A re-archived batch repeats good records byte for byte: not a failure.
    rearchived = [*bad, good[0], good[1]]
    arrivals = [(100 + n, 1_700_000_000_000 + n) for n in range(len(rearchived))]
    archive.write_part(target, part_name(1, 100, 200), rearchived, arrivals)

    result = run_gate(settings, [topic], None, None, results_dir=tmp_path / "r1")
    assert not result.passed
    reports = {(r.dt, r.hr): r for r in result.partitions}
    failing = reports[(target.day.isoformat(), target.hour)]
    assert not failing.passed
    # 5 bad records plus the good record whose event_id the conflicting one reuses.
    assert failing.bad_records == 6
    assert failing.exact_duplicates == 2
    failed = "\n".join(failing.failed_expectations)
    for expected in ("media[]: expect_column_values_to_be_in_set(content_type)",
                     "expect_column_values_to_match_regex(event_id)",
                     "expect_column_pair_values_a_to_be_greater_than_b",
                     "expect_column_values_to_be_unique(event_id)",
                     "expect_column_values_to_be_in_set(__kind)"):
        assert expected in failed, failed
    assert all(r.passed for key, r in reports.items() if key != (target.day.isoformat(),
                                                                 target.hour))
    assert list((tmp_path / "r1" / "validations").glob("*.json"))
    assert (tmp_path / "r1" / "data_docs" / "index.html").exists()
    assert "FAILED" in result.summary()

    fixed = run_gate(settings, [topic], None, None, quarantine=True)
    assert fixed.passed, fixed.summary()
    assert fixed.quarantined == 6
    moved = Archive(archive.bucket, quarantine_root(root))
    # Same topic/dt/hr, under the quarantine prefix.
    quarantined = [json.loads(line) for _, line in moved.partition_lines(target)]
    # Every copy is moved: good[0] sat in two parts (the re-archived batch).
    assert len(quarantined) == 7
    assert len({q["record"] for q in quarantined}) == 6
    assert all(q["reasons"] for q in quarantined)
    assert {q["record"] for q in quarantined} >= {b.decode() for b in bad}
    # The part's new revision keeps the arrivals of the records it keeps (good[1] only);
    # the old part's arrivals went with it.
    revised = target.prefix(root) + revised_part_name(part_name(1, 100, 200))
    assert archive.read_lines(revised) == [good[1]]
    assert archive.read_arrivals(revised) == [arrivals[-1]]
    old = target.prefix(root) + part_name(1, 100, 200)
    assert not archive.bucket.blob(arrivals_name(old)).exists()

    again = run_gate(settings, [topic], None, None)
    assert again.passed and again.quarantined == 0
    left = {line for _, line in archive.partition_lines(target)}
    assert not left & set(bad)
    assert len(left) == len(good) - 1  # the good record sharing the conflicting id moved too


def test_feedctl_quality_check_exit_codes(stack, object_prefix, tmp_path, monkeypatch):
    root = f"{object_prefix}events"
    topic = stack.kafka.follows_topic
    archive = Archive.open(stack.storage, root)
    written = _write_workload(archive, topic, "follows")
    target = sorted(written)[0]
    archive.write_part(target, part_name(1, 0, 0), [b'{"event_type": "follow"}'])
    window = ["--since", target.start.isoformat(), "--until", target.end.isoformat()]
    base = ["quality", "check", "--topic", topic, "--root", root, *window]
    assert feedctl([*base, "--results-dir", str(tmp_path)]) == 1
    assert (tmp_path / "summary.json").exists()
    assert feedctl([*base, "--quarantine"]) == 0
    assert feedctl(base) == 0
    assert feedctl(["quality", "check", "--topic", "nope", "--root", root]) == 2
    with pytest.raises(SystemExit) as usage:
        feedctl(["quality", "check", "--since", "yesterday"])
    assert usage.value.code == 2


def test_gate_reads_only_the_window(stack, object_prefix):
    root = f"{object_prefix}events"
    topic = stack.kafka.engagements_topic
    archive = Archive.open(stack.storage, root)
    written = _write_workload(archive, topic, "engagements")
    hours = sorted(written)
    bad_hour = hours[-1]
    archive.write_part(bad_hour, part_name(2, 0, 0), [b"garbage"])
    until = bad_hour.start if len(hours) > 1 else datetime(2000, 1, 1, tzinfo=UTC)
    result = run_gate(_settings(stack, root), [topic], None, until)
    assert result.passed
    assert all((r.dt, r.hr) != (bad_hour.day.isoformat(), bad_hour.hour)
               for r in result.partitions)
    with_bad = run_gate(_settings(stack, root), [topic], bad_hour.start, bad_hour.end)
    assert not with_bad.passed and with_bad.partitions[0].bad_records == 1


def test_quarantine_after_a_crash_between_rewrite_and_delete(stack, object_prefix):
    """The state a crash leaves (new part written, old part not yet deleted) heals."""
    root = f"{object_prefix}events"
    topic = stack.kafka.uploads_topic
    archive = Archive.open(stack.storage, root)
    written = _write_workload(archive, topic, "uploads")
    target = sorted(written)[0]
    good = written[target]
    old = part_name(1, 100, 200)
    archive.write_part(target, old, [*good[:2], b"garbage line"])
    archive.write_part(target, revised_part_name(old), good[:2])  # the crash's leftovers
    result = run_gate(_settings(stack, root), [topic], target.start, target.end,
                      quarantine=True)
    assert result.passed and result.quarantined == 1, result.summary()
    names = [n.rsplit("/", 1)[-1] for n in archive.part_names(target)]
    assert old not in names and revised_part_name(old) in names
    assert {line for _, line in archive.partition_lines(target)} == set(good)
