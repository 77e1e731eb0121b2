"""The archive's object layout and part encoding."""

from __future__ import annotations

from datetime import UTC, date, datetime

from feedline.archive.layout import (
    PART_SUFFIX,
    Partition,
    arrivals_name,
    decode_arrivals,
    decode_part,
    encode_arrivals,
    encode_part,
    parse_partition,
    part_name,
    part_offsets,
    partition_of,
    partitions_between,
)


def test_partition_is_the_utc_hour_of_the_event_time() -> None:
    moment = datetime.fromisoformat("2026-11-01T23:59:59.999+01:00")
    p = partition_of("follows", moment)
    assert p == Partition("follows", date(2026, 11, 1), 22)
    assert p.prefix("events") == "events/follows/dt=2026-11-01/hr=22/"
    assert p.start <= moment < p.end


def test_object_names_round_trip() -> None:
    p = Partition("uploads", date(2026, 2, 28), 7)
    name = p.prefix("events") + part_name(3, 120, 4_999)
    assert parse_partition("events", name) == p
    assert part_offsets(name) == (3, 120, 4_999)
    assert parse_partition("events", "events/uploads/dt=2026-02-30/hr=07/x") is None
    assert parse_partition("other", name) is None
    assert part_offsets("events/uploads/notes.txt") is None


def test_partitions_between_covers_the_window_and_nothing_more() -> None:
    since = datetime(2026, 11, 1, 22, 30, tzinfo=UTC)
    until = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
    hours = [(p.day.day, p.hour) for p in partitions_between("t", since, until)]
    assert hours == [(1, 22), (1, 23), (2, 0)]


def test_part_encoding_keeps_records_and_order() -> None:
    lines = [b'{"a":1}', b'{"b":"x\\ny"}', b"not json"]
    assert list(decode_part(encode_part(lines))) == lines
    assert encode_part(lines) == encode_part(lines)  # deterministic bytes (no gzip mtime)


def test_arrivals_round_trip_beside_their_part_and_are_never_listed_as_one() -> None:
    arrivals = [(0, 1_764_547_200_000), (3, 1_764_547_200_001), (2**40, 2**41)]
    assert decode_arrivals(encode_arrivals(arrivals)) == arrivals
    assert decode_arrivals(encode_arrivals([])) == []
    name = "events/follows/dt=2026-11-01/hr=22/" + part_name(1, 5, 9)
    beside = arrivals_name(name)
    assert beside == "events/follows/dt=2026-11-01/hr=22/p001-000000000005-000000000009" \
        ".arrivals.json.gz"
    # Readers list parts by their suffix and name: an arrivals object is neither.
    assert not beside.endswith(PART_SUFFIX) and part_offsets(beside) is None
    assert arrivals_name(part_name(1, 5, 9).replace(PART_SUFFIX, ".r2" + PART_SUFFIX)) \
        == "p001-000000000005-000000000009.r2.arrivals.json.gz"
