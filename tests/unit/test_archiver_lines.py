"""What the archiver stores for each Kafka record, and where."""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime

from feedline.archive.archiver import RAW_ENVELOPE_KEY, archive_line, event_hour
from feedline.archive.layout import Partition, part_name, part_offsets, revised_part_name

KAFKA_TS = int(datetime(2026, 11, 3, 5, 30, tzinfo=UTC).timestamp() * 1000)


def test_a_one_line_record_is_stored_byte_for_byte() -> None:
    value = b'{"event_id":"e1","event_time":"2026-11-01T10:00:00Z"}'
    assert archive_line(value, "t", 0, 5, KAFKA_TS) is value
    assert archive_line(b"not json", "t", 0, 5, KAFKA_TS) == b"not json"


def test_a_multi_line_object_is_compacted_and_keeps_its_content() -> None:
    value = b'{\n  "event_id": "e1",\n  "text": "a\\nb"\n}'
    line = archive_line(value, "t", 0, 5, KAFKA_TS)
    assert b"\n" not in line
    assert json.loads(line) == json.loads(value)


def test_bytes_that_cannot_be_a_line_are_wrapped_losslessly() -> None:
    for value in (b"", b"two\nlines", None):
        line = archive_line(value, "topic", 2, 9, KAFKA_TS)
        assert b"\n" not in line
        envelope = json.loads(line)
        assert base64.b64decode(envelope[RAW_ENVELOPE_KEY]) == (value or b"")
        assert envelope["_kafka"] == {"topic": "topic", "partition": 2, "offset": 9,
                                      "timestamp_ms": KAFKA_TS, "tombstone": value is None}


def test_partition_is_the_event_time_hour_else_the_kafka_timestamp_hour() -> None:
    on_time = b'{"event_time":"2026-11-01T23:59:59.999+01:00"}'
    assert event_hour("t", on_time, KAFKA_TS) == Partition("t", date(2026, 11, 1), 22)
    by_kafka = Partition("t", date(2026, 11, 3), 5)
    for value in (b"garbage", b"[1]", b'{"event_time": "yesterday"}',
                  b'{"event_time": "2026-11-01T10:00:00"}',  # no offset
                  b'{"event_time": 5}', b"", None):
        assert event_hour("t", value, KAFKA_TS) == by_kafka, value


def test_revised_part_names_keep_their_kafka_coordinates() -> None:
    name = part_name(1, 10, 20)
    first = revised_part_name(f"events/t/dt=2026-11-01/hr=00/{name}")
    assert first == "p001-000000000010-000000000020.r1.jsonl.gz"
    assert revised_part_name(first) == "p001-000000000010-000000000020.r2.jsonl.gz"
    assert part_offsets(first) == (1, 10, 20)
    assert revised_part_name("odd.jsonl.gz") == "odd.r1.jsonl.gz"
