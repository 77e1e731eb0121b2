"""The archiver on the real stack: Kafka -> object storage, crash between write and commit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter

import pytest
from kafka import KafkaProducer

from feedline.archive.archiver import RAW_ENVELOPE_KEY, Archiver
from feedline.archive.lag import archive_lag
from feedline.archive.layout import PART_SUFFIX, part_offsets
from feedline.archive.store import Archive
from feedline.settings import KafkaSettings, StackSettings
from feedline.workload import Workload, WorkloadSpec
from jobs.load import produce
from tests.support.kills import topic_records
from tests.support.waiting import HANG_GUARD_S, eventually

SPEC = WorkloadSpec(users=120, posts=60, mean_followers=6, max_followers=30, seed=7)
GARBAGE = [b"not json at all", b"", b'{"event_type": "follow",\n "oops": 1}', b"[1, 2]"]


class Crash(RuntimeError):
    """Raised by the test hook between writing objects and committing offsets."""


def _kafka(stack: StackSettings, topic_factory) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=stack.kafka.bootstrap_servers,
        uploads_topic=topic_factory(2), follows_topic=topic_factory(2),
        engagements_topic=topic_factory(2), partitions=2)


def _produce_all(kafka: KafkaSettings, part: slice = slice(None)) -> Counter[str]:
    """The workload (a slice of it) plus garbage on the follows topic; returns event ids."""
    events = list(Workload(SPEC).events())[part]
    produce(kafka, events)
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
    for value in GARBAGE:
        producer.send(kafka.follows_topic, value=value, key=b"garbage")
    producer.flush()
    producer.close()
    return Counter(e.event.event_id for e in events)


def _archived(archive: Archive, kafka: KafkaSettings) -> tuple[Counter[str], list[bytes]]:
    """Event ids after de-dup (counted) and the lines that are not events."""
    ids: Counter[str] = Counter()
    other: list[bytes] = []
    for topic in kafka.event_topics:
        for partition in archive.partitions(topic):
            for record in archive.partition_records(partition):
                if "event_id" in record:
                    ids[record["event_id"]] += 1
            other.extend(line for _, line in archive.partition_lines(partition)
                         if b'"event_id"' not in line)
    return ids, other


def _check_arrivals(archive: Archive, kafka: KafkaSettings) -> int:
    """Every part's arrivals are its lines' Kafka offsets and record timestamps (the
    broker's append time), in line order; returns the parts checked."""
    records = {(r.topic, r.partition, r.offset): (r.timestamp, r.value or b"")
               for r in topic_records(kafka.bootstrap_servers, kafka.event_topics)}
    checked = 0
    for topic in kafka.event_topics:
        for partition in archive.partitions(topic):
            for name in archive.part_names(partition):
                lines, arrivals = archive.read_lines(name), archive.read_arrivals(name)
                assert arrivals is not None and len(arrivals) == len(lines), name
                coordinates = part_offsets(name.rsplit("/", 1)[-1])
                assert coordinates is not None
                kafka_partition, first, last = coordinates
                assert [o for o, _ in arrivals] == sorted(o for o, _ in arrivals)
                assert (arrivals[0][0], arrivals[-1][0]) == (first, last), name
                for line, (offset, at) in zip(lines, arrivals, strict=True):
                    timestamp, value = records[(topic, kafka_partition, offset)]
                    assert at == timestamp, (name, offset)
                    if b"\n" not in value and value:  # stored as its bytes
                        assert line == value, (name, offset)
                checked += 1
    return checked


def test_crash_after_write_before_commit_loses_nothing(stack, topic_factory, object_prefix):
    kafka = _kafka(stack, topic_factory)
    produced = _produce_all(kafka)
    total = sum(produced.values()) + len(GARBAGE)
    root = f"{object_prefix}events"
    group = f"archiver-{object_prefix.strip('/')}"
    written: list[int] = []

    def crash_on_third(batch) -> None:
        written.append(batch.last_offset - batch.first_offset + 1)
        if len(written) == 3:
            raise Crash("killed after writing, before committing")

    first = Archiver(kafka, stack.storage, topics=kafka.event_topics, root=root,
                     group_id=group, max_records=200, on_written=crash_on_third)
    with pytest.raises(Crash):
        first.drain(timeout_s=HANG_GUARD_S)
    lag = sum(row.lag for row in archive_lag(kafka, kafka.event_topics, group))
    assert lag > 0, "the crashed batch must not be committed"

    second = Archiver(kafka, stack.storage, topics=kafka.event_topics, root=root,
                      group_id=group, max_records=150)  # cut batches differently: duplicates
    archived = second.drain(timeout_s=HANG_GUARD_S)
    assert archived == lag, "the restart archives exactly what was not committed"
    assert sum(row.lag for row in archive_lag(kafka, kafka.event_topics, group)) == 0

    archive = Archive.open(stack.storage, root)
    ids, other = _archived(archive, kafka)
    assert ids == Counter(set(produced)), "every event exactly once after de-dup"
    raw = sum(1 for t in kafka.event_topics for p in archive.partitions(t)
              for _ in archive.partition_lines(p))
    assert raw > total, "the crashed batch was written twice (and de-duplicated)"
    # Garbage is archived, not lost: non-JSON as is, an empty value as an envelope, a
    # multi-line object compacted onto one line.
    assert b"not json at all" in other and b"[1, 2]" in other
    assert any(RAW_ENVELOPE_KEY.encode() in line and b'"tombstone":false' in line
               for line in other)
    assert json.dumps({"event_type": "follow", "oops": 1},
                      separators=(",", ":")).encode() in other
    # Each record's arrival is kept beside its line, duplicates' too.
    assert _check_arrivals(archive, kafka) >= 4
    # A later drain with nothing new writes nothing.
    assert second.drain(timeout_s=HANG_GUARD_S) == 0


def test_killed_archiver_process_resumes_from_committed_offsets(stack, topic_factory,
                                                                object_prefix):
    kafka = _kafka(stack, topic_factory)
    produced = _produce_all(kafka, slice(0, 600))
    root = f"{object_prefix}events"
    group = f"archiver-{object_prefix.strip('/')}"
    archive = Archive.open(stack.storage, root)
    env = dict(os.environ, FEEDLINE_KAFKA__BOOTSTRAP_SERVERS=kafka.bootstrap_servers)
    argv = [sys.executable, "-m", "jobs.feedctl.main", "archive", "run", "--root", root,
            "--group", group, "--max-records", "100", "--max-age", "0.5"]
    for topic in kafka.event_topics:
        argv += ["--topic", topic]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        def wrote_three_parts() -> bool:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            return len([b for b in archive.bucket.list_blobs(prefix=root)
                        if b.name.endswith(PART_SUFFIX)]) >= 3

        eventually(wrote_three_parts, "the archiver process to write three parts", every_s=0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # no chance to flush or commit
        proc.wait(timeout=HANG_GUARD_S)
    later = _produce_all(kafka, slice(600, None))  # produced while the archiver was down
    produced.update(later)
    resumed = Archiver(kafka, stack.storage, topics=kafka.event_topics, root=root,
                       group_id=group, max_records=1000)
    assert resumed.drain(timeout_s=HANG_GUARD_S) >= sum(later.values())
    ids, _ = _archived(archive, kafka)
    assert ids == Counter(set(produced))
    assert sum(row.lag for row in archive_lag(kafka, kafka.event_topics, group)) == 0


def test_two_archivers_in_one_group_survive_rebalances(stack, topic_factory, object_prefix):
    kafka = _kafka(stack, topic_factory)
    root = f"{object_prefix}events"
    group = f"archiver-{object_prefix.strip('/')}"
    stops = [threading.Event(), threading.Event()]
    errors: list[BaseException] = []

    members = [Archiver(kafka, stack.storage, topics=kafka.event_topics, root=root,
                        group_id=group, max_records=100_000, max_age_s=4.0) for _ in stops]

    def member(archiver: Archiver, stop: threading.Event) -> None:
        try:
            archiver.run(stop)
        except BaseException as err:  # surfaced by the assertions below
            errors.append(err)

    threads = [threading.Thread(target=member, args=pair, daemon=True)
               for pair in zip(members, stops, strict=True)]
    threads[0].start()
    produced = _produce_all(kafka, slice(0, 500))
    # Wait (however long this machine needs) until the first member holds unflushed records.
    eventually(lambda: errors or any(len(b.records) for b in list(members[0]._buffers.values())),
               "the first archiver to buffer records", every_s=0.05)
    threads[1].start()  # joins the group: buffered partitions are revoked, some reassigned
    produced.update(_produce_all(kafka, slice(500, None)))

    def caught_up() -> bool:
        assert not errors, errors
        return sum(r.lag for r in archive_lag(kafka, kafka.event_topics, group)) == 0

    eventually(caught_up, "both archivers to commit every offset")
    stops[1].set()  # leaving triggers one more rebalance for the other member
    threads[1].join(timeout=HANG_GUARD_S)
    stops[0].set()
    threads[0].join(timeout=HANG_GUARD_S)
    assert not errors, errors
    ids, _ = _archived(Archive.open(stack.storage, root), kafka)
    assert ids == Counter(set(produced))
