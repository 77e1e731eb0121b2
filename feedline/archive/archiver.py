"""The archiver: copies the event topics from Kafka into the object-storage archive.

A kafka-python consumer (group ``feedline-archiver``, manual commits) buffers records per
Kafka partition, flushes a buffer when it is big or old enough, groups its records by the
UTC hour of their ``event_time`` and writes one part per group with ``Archive.write_part``.
Offsets are committed only after every part of a buffer is written, so a crash between the
write and the commit re-archives the same records (same part names when the batch is cut
the same way, duplicates otherwise); readers de-duplicate by ``event_id``. Nothing is lost.

Records that are not JSON objects with a parseable, offset-carrying ``event_time`` are
archived too, under the hour of their Kafka record timestamp, so the quality gate sees and
flags them. A record whose bytes cannot be one JSON Lines line as they are (empty, a
tombstone, or containing a line break) is stored as a one-line JSON envelope
``{"_archived_raw_b64": …, "_kafka": {…}}`` holding its exact bytes.

Why a plain kafka-python consumer rather than a PyFlink job:

* The work is a copy with no keyed state, joins or windows: Flink's strengths go unused.
* Objects are written by the google-cloud-storage client in one upload each; in Flink this
  would be a Python ``ProcessFunction`` whose checkpoint-aligned flush needs operator state
  to hold unwritten buffers, while here "write, then commit the offset" gives the same
  at-least-once guarantee with a few lines and de-dup by ``event_id`` does the rest.
* Flink's Python DataStream Kafka source exposes values only (``pipelines/streaming/job_graph``
  goes through the Table API to get partitions/offsets), and part names need both.
* A Python process costs ~100 MB; a Flink job needs a task slot and a Python worker beside
  the JVM TaskManager (~550 MB RSS measured locally), on a 2-core machine already running
  the two streaming jobs.
* Scaling out is by consumer-group membership: more archiver processes share partitions.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)
from kafka.structs import OffsetAndMetadata

from feedline.archive.layout import Partition, part_name, partition_of
from feedline.archive.store import Archive
from feedline.settings import KafkaSettings, StorageSettings

log = logging.getLogger("feedline.archiver")

#: Commit errors meaning "not (or no longer) a member of the group's current generation".
_REFUSED = (CommitFailedError, UnknownMemberIdError, IllegalGenerationError,
            RebalanceInProgressError)
#: The JSON key of the envelope holding a record whose bytes are not one JSONL line.
RAW_ENVELOPE_KEY = "_archived_raw_b64"


@dataclass
class _Buffer:
    """Unwritten records of one Kafka partition."""

    records: list[tuple[int, int, bytes | None]] = field(default_factory=list)
    """``(offset, Kafka timestamp ms, value)`` in offset order."""
    size: int = 0
    since: float = 0.0
    """Monotonic time the first record arrived."""


@dataclass(frozen=True)
class WrittenBatch:
    """What one flush wrote, handed to the ``on_written`` hook before offsets are committed."""

    topic: str
    kafka_partition: int
    first_offset: int
    last_offset: int
    objects: tuple[str, ...]


def archive_line(value: bytes | None, topic: str, kafka_partition: int, offset: int,
                 timestamp_ms: int) -> bytes:
    """The JSONL line stored for one record: its bytes, or an envelope when they cannot be.

    A JSON object spread over several lines is stored compacted (same content).
    """
    if value and b"\n" not in value and b"\r" not in value:
        return value
    if value:
        try:
            record = json.loads(value)
        except (ValueError, RecursionError):
            record = None
        if isinstance(record, dict):  # pretty-printed JSON: the same object on one line
            return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()
    envelope = {
        RAW_ENVELOPE_KEY: base64.b64encode(value or b"").decode("ascii"),
        "_kafka": {"topic": topic, "partition": kafka_partition, "offset": offset,
                   "timestamp_ms": timestamp_ms, "tombstone": value is None},
    }
    return json.dumps(envelope, separators=(",", ":"), sort_keys=True).encode()


def event_hour(topic: str, value: bytes | None, timestamp_ms: int) -> Partition:
    """The archive partition of a record: its event time's hour, else its Kafka timestamp's."""
    return event_facts(topic, value, timestamp_ms)[0]


def event_facts(topic: str, value: bytes | None,
                timestamp_ms: int) -> tuple[Partition, str | None]:
    """A record's archive partition (see `event_hour`) and its ``event_id`` (None if none)."""
    event_id = None
    if value:
        try:
            record = json.loads(value)
            found = record.get("event_id")
            event_id = found if isinstance(found, str) else None
            moment = datetime.fromisoformat(record["event_time"])
            if moment.utcoffset() is not None:
                return partition_of(topic, moment), event_id
        except (ValueError, TypeError, KeyError, RecursionError, AttributeError):
            pass
    moment = datetime.fromtimestamp(max(timestamp_ms, 0) / 1000, tz=UTC)
    return partition_of(topic, moment), event_id


#: Event ids per "archived" log line: a part of 20,000 records is 100 lines, none huge.
EVENT_IDS_PER_LINE = 200


def log_archived_ids(topic: str, kafka_partition: int, obj: str,
                     rows: Sequence[tuple[int, str | None]]) -> None:
    """Log the event ids of one written part (``rows``: offset, event id), a chunk a line.

    The lines let on-call find where an event was archived (`feedctl local logs --grep`).
    """
    if not log.isEnabledFor(logging.INFO):
        return
    for start in range(0, len(rows), EVENT_IDS_PER_LINE):
        chunk = rows[start:start + EVENT_IDS_PER_LINE]
        ids = [event_id for _, event_id in chunk if event_id]
        log.info("archived %s[%d] offsets %d-%d: %d event id(s) in %s", topic, kafka_partition,
                 chunk[0][0], chunk[-1][0], len(ids), obj,
                 extra={"topic": topic, "kafka_partition": kafka_partition,
                        "object": obj, "event_ids": ids})


class Archiver:
    """Archive Kafka topics into object storage; commit offsets only after writing.

    ``max_records``/``max_bytes`` bound a partition's buffer, ``max_age_s`` how long a record
    may wait. ``on_written`` is called after a batch's objects are written and before its
    offset is committed (progress reporting; tests use it to crash at the worst moment);
    ``on_poll`` after every poll of ``run`` (a liveness heartbeat).
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        storage: StorageSettings,
        *,
        topics: Sequence[str],
        root: str = "events",
        group_id: str = "feedline-archiver",
        max_records: int = 50_000,
        max_bytes: int = 16 * 1024 * 1024,
        max_age_s: float = 30.0,
        on_written: Callable[[WrittenBatch], Any] | None = None,
        on_poll: Callable[[], Any] | None = None,
    ) -> None:
        if not topics:
            raise ValueError("Archiver needs at least one topic")
        self.kafka = kafka
        self.topics = tuple(topics)
        self.group_id = group_id
        self.archive = Archive.open(storage, root)
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.on_written = on_written
        self.on_poll = on_poll
        self.archived = 0
        """Records written so far by this instance."""
        self._buffers: dict[TopicPartition, _Buffer] = {}

    # --- the consumer ----------------------------------------------------------------------

    def _open(self) -> KafkaConsumer:
        return KafkaConsumer(
            **self.kafka.client_options(),
            group_id=self.group_id,
            client_id=f"{self.group_id}-archiver",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=5000,
            fetch_max_bytes=16 * 1024 * 1024,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            consumer_timeout_ms=float("inf"),
            session_timeout_ms=10_000,
            heartbeat_interval_ms=3_000,
        )

    def _partitions(self, consumer: KafkaConsumer) -> list[TopicPartition]:
        found: list[TopicPartition] = []
        for topic in self.topics:
            parts = consumer.partitions_for_topic(topic)
            if not parts:
                raise RuntimeError(f"topic {topic!r} does not exist (or has no partitions)")
            found.extend(TopicPartition(topic, p) for p in sorted(parts))
        return found

    def _wait_for_topics(self, consumer: KafkaConsumer, stop: threading.Event) -> None:
        """Wait until every topic exists (the stack creates them after the broker is up)."""
        while not stop.is_set():
            try:
                self._partitions(consumer)
                return
            except RuntimeError as missing:
                log.info("waiting for topics: %s", missing)
                if self.on_poll is not None:
                    self.on_poll()
                stop.wait(2.0)

    # --- buffering and flushing ------------------------------------------------------------

    def _add(self, tp: TopicPartition, records: Iterable[Any]) -> None:
        buffer = self._buffers.setdefault(tp, _Buffer())
        for record in records:
            if not buffer.records:
                buffer.since = time.monotonic()
            buffer.records.append((record.offset, record.timestamp, record.value))
            buffer.size += len(record.value or b"") + 64

    def _due(self, buffer: _Buffer, now: float) -> bool:
        return bool(buffer.records) and (
            len(buffer.records) >= self.max_records
            or buffer.size >= self.max_bytes
            or now - buffer.since >= self.max_age_s
        )

    def _write(self, tp: TopicPartition, buffer: _Buffer) -> WrittenBatch:
        """Write a buffer, ``max_records`` at a time, one part per event-time hour.

        Nothing is committed here.
        """
        objects = []
        for start in range(0, len(buffer.records), self.max_records):
            groups: dict[Partition, list[tuple[int, int, bytes, str | None]]] = {}
            for offset, timestamp_ms, value in buffer.records[start:start + self.max_records]:
                partition, event_id = event_facts(tp.topic, value, timestamp_ms)
                line = archive_line(value, tp.topic, tp.partition, offset, timestamp_ms)
                groups.setdefault(partition, []).append((offset, timestamp_ms, line, event_id))
            for partition, rows in sorted(groups.items()):
                name = part_name(tp.partition, rows[0][0], rows[-1][0])
                obj = self.archive.write_part(partition, name, (li for _, _, li, _ in rows),
                                              arrivals=[(offset, at) for offset, at, _, _ in rows])
                objects.append(obj)
                log_archived_ids(tp.topic, tp.partition, str(obj),
                                 [(offset, event_id) for offset, _, _, event_id in rows])
        return WrittenBatch(tp.topic, tp.partition, buffer.records[0][0],
                            buffer.records[-1][0], tuple(objects))

    def _flush(self, consumer: KafkaConsumer, tps: Iterable[TopicPartition],
               retry_until: float | None = None) -> int:
        """Write then commit the given partitions' buffers; returns records archived."""
        commits: dict[TopicPartition, OffsetAndMetadata] = {}
        written = 0
        for tp in list(tps):
            buffer = self._buffers.get(tp)
            if buffer is None or not buffer.records:
                continue
            batch = self._write(tp, buffer)
            if self.on_written is not None:
                self.on_written(batch)
            commits[tp] = OffsetAndMetadata(batch.last_offset + 1, "", -1)
            written += len(buffer.records)
            log.info("archived %s[%d] offsets %d-%d (%d records) into %d object(s)",
                     tp.topic, tp.partition, batch.first_offset, batch.last_offset,
                     len(buffer.records), len(batch.objects))
            self._buffers[tp] = _Buffer()
        if commits:
            self._commit(consumer, commits, retry_until)
        self.archived += written
        return written

    @staticmethod
    def _commit(consumer: KafkaConsumer, commits: dict[TopicPartition, OffsetAndMetadata],
                retry_until: float | None) -> None:
        """Commit; a standalone (``drain``) commit waits for a dead member's session to end.

        A group that still lists a member (a killed archiver, until its session times out)
        refuses commits from outside the group; the objects are written already, so waiting
        is safe.
        """
        while True:
            try:
                consumer.commit(commits)
                return
            except _REFUSED as refused:
                if retry_until is None or time.monotonic() > retry_until:
                    raise
                log.info("offset commit refused (%s); the group has a member, retrying",
                         type(refused).__name__)
                time.sleep(1.0)

    # --- entry points ----------------------------------------------------------------------

    def drain(self, timeout_s: float) -> int:
        """Archive everything up to the topics' end offsets at call time; returns records.

        Reads with manual assignment of every partition (no group membership), starting at
        the group's committed offsets, writes and commits. Raises ``TimeoutError`` if the
        end offsets are not reached in ``timeout_s`` (what was written is committed).

        Use a group no running archiver belongs to (the service holds ``feedline-archiver``):
        the broker refuses commits from outside a group that has live members, and ``drain``
        waits for them to leave (a killed member leaves after its 10 s session timeout).
        """
        consumer = self._open()
        deadline = time.monotonic() + timeout_s
        archived = 0
        try:
            tps = self._partitions(consumer)
            consumer.assign(tps)
            targets = consumer.end_offsets(tps)
            pending = {tp for tp in tps if consumer.position(tp) < targets[tp]}
            while pending:
                if time.monotonic() > deadline:
                    archived += self._flush(consumer, tps, deadline + 30)
                    raise TimeoutError(
                        f"archiver drain: {len(pending)} partition(s) not caught up "
                        f"after {timeout_s:.0f}s ({archived} records archived)")
                batches = consumer.poll(timeout_ms=500)
                for tp, records in batches.items():
                    self._add(tp, (r for r in records if r.offset < targets[tp]))
                now = time.monotonic()
                archived += self._flush(
                    consumer, [tp for tp, b in self._buffers.items() if self._due(b, now)],
                    deadline)
                pending = {tp for tp in pending if consumer.position(tp) < targets[tp]}
            archived += self._flush(consumer, tps, deadline)
        finally:
            self._buffers.clear()
            consumer.close(autocommit=False)
        return archived

    def _resync(self, consumer: KafkaConsumer, tps: Iterable[TopicPartition]) -> None:
        """Forget unwritten buffers and rewind to the committed offsets.

        After a rebalance or a refused commit the fetch position may be past records that
        were buffered but never written; rewinding re-reads them (at-least-once).
        """
        assigned = consumer.assignment()
        for tp in tps:
            self._buffers.pop(tp, None)
            if tp in assigned:
                committed = consumer.committed(tp)
                if committed is None:
                    consumer.seek_to_beginning(tp)
                else:
                    consumer.seek(tp, committed)

    def run(self, stop: threading.Event, *, report_every_s: float = 60.0) -> int:
        """Archive continuously as a group member until ``stop`` is set; returns records.

        Buffers are flushed when due and on stop. After a rebalance the affected partitions
        drop their unwritten buffers and rewind to the committed offsets; a crash loses
        only uncommitted work. Either way it is re-archived from the committed offsets.
        """
        consumer = self._open()
        changed: set[TopicPartition] = set()
        lock = threading.Lock()

        class _MarkOnRebalance(ConsumerRebalanceListener):
            # kafka-python runs listeners on its IO thread, where nothing may block (no
            # commit, no committed-offset lookup): mark the partitions, the loop resyncs them.
            def on_partitions_revoked(self, revoked: Any) -> None:
                with lock:
                    changed.update(revoked)
                log.info("revoked %s", sorted((tp.topic, tp.partition) for tp in revoked))

            def on_partitions_assigned(self, assigned: Any) -> None:
                with lock:
                    changed.update(assigned)
                log.info("assigned %s", sorted((tp.topic, tp.partition) for tp in assigned))

        started = time.monotonic()
        next_report = started + report_every_s
        try:
            self._wait_for_topics(consumer, stop)
            consumer.subscribe(list(self.topics), listener=_MarkOnRebalance())
            log.info("archiver started: group %s, topics %s", self.group_id, self.topics)
            while not stop.is_set():
                batches = consumer.poll(timeout_ms=500)
                with lock:
                    moved = set(changed)
                    changed.clear()
                if moved:
                    self._resync(consumer, moved)
                for tp, records in batches.items():
                    if tp not in moved:  # a resynced partition re-reads these records
                        self._add(tp, records)
                now = time.monotonic()
                try:
                    self._flush(consumer,
                                [tp for tp, b in self._buffers.items() if self._due(b, now)])
                except _REFUSED as lost:
                    # Out of the group (a rebalance while writing): the objects are written;
                    # rewind to what is committed and let the rejoin decide who archives it.
                    log.warning("commit refused, rewinding to committed offsets: %s", lost)
                    self._resync(consumer, list(self._buffers) + list(consumer.assignment()))
                if self.on_poll is not None:
                    self.on_poll()
                if now >= next_report:
                    log.info("archiver progress: %d records archived in %.0fs",
                             self.archived, now - started)
                    next_report = now + report_every_s
            self._flush(consumer, list(self._buffers))
        finally:
            self._buffers.clear()
            consumer.close(autocommit=False)
        log.info("archiver stopped: %d records archived", self.archived)
        return self.archived
