"""Dead letters: inspect ``<topic>.dlq`` and replay fixed ones to the original topic.

A dead letter is the JSON record the streaming jobs write (``pipelines.streaming.parse``):
``reason``, ``detail``, source ``topic``/``partition``/``offset`` and ``payload_b64``.

Replay reads the dead letters after the replay group's committed offset up to the end at
call time. For each one the candidate is a corrected event from ``fixes`` (matched by the
dead letter's source offset or by the ``event_id`` of its payload) or else the original
payload; a candidate that passes the current schemas is published to the original topic
with its partition key. A dead letter still broken is *parked*: re-appended to the same DLQ
topic with ``replays`` incremented, so it stays pending for a later replay (with a fix file)
while the group moves past it. Publishing, parking and the DLQ offset commit happen in one
Kafka transaction, so a crash or a rerun never publishes the same dead letter twice.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from feedline.rules.retention import TOO_LATE, too_late
from feedline.settings import KafkaSettings
from schemas.event_contracts import InvalidEvent, encode_event, parse_event

REPLAY_GROUP = "feedline-dlq-replay"


@dataclass(frozen=True)
class DeadLetter:
    """One record of a dead-letter topic."""

    dlq_partition: int
    dlq_offset: int
    reason: str
    detail: str
    source: str
    """``topic[partition]@offset`` of the original record."""
    payload: bytes
    letter: dict[str, Any]

    @property
    def event_id(self) -> str | None:
        """The payload's ``event_id`` when it is a JSON object carrying one."""
        try:
            data = json.loads(self.payload)
        except (ValueError, RecursionError):
            return None
        value = data.get("event_id") if isinstance(data, dict) else None
        return value if isinstance(value, str) else None


def decode_letter(partition: int, offset: int, value: bytes | None) -> DeadLetter:
    """Parse a DLQ record; a record that is not a dead letter is reported as ``malformed``."""
    try:
        letter = json.loads(value or b"")
        payload = base64.b64decode(letter["payload_b64"], validate=True)
        source = f"{letter.get('topic')}[{letter.get('partition')}]@{letter.get('offset')}"
        return DeadLetter(partition, offset, str(letter["reason"]), str(letter.get("detail")),
                          source, payload, letter)
    except (ValueError, TypeError, KeyError):
        return DeadLetter(partition, offset, "malformed_dead_letter", "not a dead-letter record",
                          "?", value or b"", {})


def _consumer(kafka: KafkaSettings, group_id: str | None, **extra: Any) -> KafkaConsumer:
    return KafkaConsumer(**kafka.client_options(), group_id=group_id,
                         enable_auto_commit=False, auto_offset_reset="earliest",
                         client_id="feedline-dlq", **extra)


def _read(consumer: KafkaConsumer, tps: list[TopicPartition],
          ends: Mapping[TopicPartition, int]) -> Iterator[DeadLetter]:
    """Dead letters from the consumer's positions up to ``ends``."""
    pending = {tp for tp in tps if consumer.position(tp) < ends[tp]}
    while pending:
        for tp, records in consumer.poll(timeout_ms=1000).items():
            for record in records:
                if record.offset < ends[tp]:
                    yield decode_letter(tp.partition, record.offset, record.value)
        pending = {tp for tp in pending if consumer.position(tp) < ends[tp]}


def _partitions(consumer: KafkaConsumer, topic: str) -> list[TopicPartition]:
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        raise ValueError(f"topic {topic!r} does not exist")
    return [TopicPartition(topic, p) for p in sorted(parts)]


@dataclass
class Inspection:
    """What a dead-letter topic holds."""

    topic: str
    total: Counter[str] = field(default_factory=Counter)
    """Every dead letter by reason."""
    pending: Counter[str] = field(default_factory=Counter)
    """Dead letters after the replay group's committed offsets, by reason."""
    samples: list[DeadLetter] = field(default_factory=list)


def inspect_dlq(kafka: KafkaSettings, topic: str, *, samples: int = 5,
                group_id: str = REPLAY_GROUP) -> Inspection:
    """Count the dead letters of ``topic`` by reason; sample the pending ones."""
    dlq = kafka.dlq_topic(topic)
    consumer = _consumer(kafka, None, isolation_level="read_committed")
    committed_by = _consumer(kafka, group_id)
    try:
        tps = _partitions(consumer, dlq)
        committed = {tp: committed_by.committed(tp) or 0 for tp in tps}
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        report = Inspection(dlq)
        for letter in _read(consumer, tps, ends):
            report.total[letter.reason] += 1
            if letter.dlq_offset >= committed[TopicPartition(dlq, letter.dlq_partition)]:
                report.pending[letter.reason] += 1
                if len(report.samples) < samples:
                    report.samples.append(letter)
        return report
    finally:
        consumer.close(autocommit=False)
        committed_by.close(autocommit=False)


@dataclass
class ReplayReport:
    """What a replay did (or, dry, would do)."""

    published: int = 0
    fixed_from_file: int = 0
    still_broken: list[tuple[DeadLetter, str]] = field(default_factory=list)
    """Dead letters whose candidate still fails, with the current reason (parked again)."""
    bad_fixes: list[str] = field(default_factory=list)
    """Lines of the fix file that are not valid events."""
    dry_run: bool = False


def load_fixes(role: str, lines: list[str]) -> tuple[dict[str, bytes], dict[int, bytes],
                                                      list[str]]:
    """Corrected events from JSONL text: by ``event_id`` and by ``dlq_offset`` wrapper.

    A line is an event object, or ``{"dlq_offset": N, "event": {…}}`` for a dead letter whose
    payload has no usable ``event_id``. Returns (by id, by offset, problems).
    """
    by_id: dict[str, bytes] = {}
    by_offset: dict[int, bytes] = {}
    problems: list[str] = []
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            data = json.loads(text)
            offset = data.get("dlq_offset") if isinstance(data, dict) else None
            event_data = data["event"] if offset is not None else data
            event = parse_event(role, json.dumps(event_data))
        except (ValueError, KeyError, TypeError) as err:
            problems.append(f"line {number}: {err}")
            continue
        if isinstance(offset, int):
            by_offset[offset] = encode_event(event)
        else:
            by_id[event.event_id] = encode_event(event)
    return by_id, by_offset, problems


def replay_dlq(kafka: KafkaSettings, topic: str, role: str, *, fix_lines: Sequence[str] = (),
               dry_run: bool = False, group_id: str = REPLAY_GROUP,
               lateness_bound_ms: int | None = None) -> ReplayReport:
    """Re-publish the pending dead letters of ``topic`` that now pass (see module doc).

    With a lateness bound, an event that would arrive too late if published now (its
    ``event_time`` older than the bound) stays parked as ``too_late``: the jobs would only
    dead-letter it again.
    """
    dlq = kafka.dlq_topic(topic)
    by_id, by_offset, problems = load_fixes(role, list(fix_lines))
    report = ReplayReport(bad_fixes=problems, dry_run=dry_run)
    consumer = _consumer(kafka, group_id, isolation_level="read_committed")
    producer = None if dry_run else KafkaProducer(
        **kafka.client_options(), acks="all", enable_idempotence=True,
        transactional_id=f"{group_id}-{dlq}", client_id="feedline-dlq-replay")
    try:
        tps = _partitions(consumer, dlq)
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        if producer is not None:
            producer.init_transactions()
            producer.begin_transaction()
        for letter in _read(consumer, tps, ends):
            fix = by_offset.get(letter.dlq_offset)
            event_id = letter.event_id
            if fix is None and event_id is not None:
                fix = by_id.get(event_id)
            candidate = fix if fix is not None else letter.payload
            refused: tuple[str, str] | None = None
            try:
                event = parse_event(role, candidate)
            except InvalidEvent as err:
                refused = (err.reason, err.detail)
            else:
                now_ms = time.time_ns() // 1_000_000
                if too_late(now_ms, event.event_time_ms, lateness_bound_ms):
                    refused = (TOO_LATE, (
                        f"$.event_time: {now_ms - event.event_time_ms} ms old, more than the "
                        f"bound {lateness_bound_ms} ms (feed.lateness_bound_s): the jobs "
                        "would refuse it again"))
            if refused is not None:
                reason, detail = refused
                report.still_broken.append((letter, f"{reason}: {detail}"))
                if producer is not None:
                    parked = dict(letter.letter or {"payload_b64": base64.b64encode(
                        letter.payload).decode("ascii"), "topic": topic})
                    parked.update(reason=reason, detail=detail,
                                  replays=int(parked.get("replays", 0)) + 1)
                    producer.send(dlq, value=json.dumps(parked, sort_keys=True).encode())
                continue
            report.published += 1
            report.fixed_from_file += fix is not None
            if producer is not None:
                producer.send(topic, key=event.key.encode(), value=encode_event(event))
        if producer is not None:
            positions = {tp: OffsetAndMetadata(consumer.position(tp), "", -1) for tp in tps}
            producer.send_offsets_to_transaction(positions, group_id)
            producer.commit_transaction()
    except BaseException:
        if producer is not None:
            try:
                producer.abort_transaction()
            except Exception:  # noqa: S110 (the original error matters more)
                pass
        raise
    finally:
        consumer.close(autocommit=False)
        if producer is not None:
            producer.close()
    return report


def new_replay_group() -> str:
    """A unique replay group name (tests and one-off replays from scratch)."""
    return f"{REPLAY_GROUP}-{uuid.uuid4().hex[:8]}"
