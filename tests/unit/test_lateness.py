"""The lateness bound: one test, on the same two numbers, in every engine.

``too_late`` judges an event by its Kafka arrival (the broker's append time) and its own
``event_time``; the rebuild judges an archived line by the same numbers (its arrival kept
beside the part, its ``event_time`` read from the line) and must agree with the streaming
jobs, which judge the parsed event.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from feedline.rules.fanout import Edge
from feedline.rules.keys import Job
from feedline.rules.retention import (
    TOO_LATE,
    bound_ms,
    line_event_time_ms,
    line_too_late,
    prune_due,
    prune_edge,
    too_late,
)
from feedline.settings import FeedSettings
from pipelines.streaming.parse import arrival_ms, parse_or_dead_letter
from schemas.event_contracts import encode_event, epoch_ms, new_event, parse_event

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def test_the_bound_is_exclusive_and_off_without_one() -> None:
    assert not too_late(10_000, 9_000, 1_000)  # exactly the bound: admitted
    assert too_late(10_001, 9_000, 1_000)
    assert not too_late(10**15, 0, None)  # no bound: nothing is too late
    assert not too_late(8_000, 9_000, 1_000)  # arrived "before" its time (a skewed clock)


def test_bound_from_the_setting() -> None:
    assert bound_ms(None) is None
    assert bound_ms(2.5) == 2_500
    assert FeedSettings().lateness_bound_s is None
    with pytest.raises(ValidationError):
        FeedSettings(lateness_bound_s=0)


@pytest.mark.parametrize(("text", "ms"), [
    ("1970-01-01T00:00:00.001Z", 1),
    ("1970-01-01T01:00:00.0019+01:00", 1),  # floored, offset applied
    ("1969-12-31T23:59:59.9995Z", -1),      # floored towards the past
])
def test_epoch_ms(text: str, ms: int) -> None:
    assert epoch_ms(text) == ms


def test_epoch_ms_refuses_a_time_without_offset() -> None:
    with pytest.raises(ValueError, match="offset"):
        epoch_ms("2026-11-01T00:00:00")


# hypothesis takes naive bounds and attaches the zone itself.
@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),  # noqa: DTZ001
                    timezones=st.just(UTC)),
       st.integers(min_value=-10**9, max_value=10**9),
       st.integers(min_value=1, max_value=10**8))
def test_a_line_is_judged_as_its_parsed_event(moment: datetime, lag_ms: int,
                                              bound: int) -> None:
    """The rebuild's verdict on the archived bytes equals streaming's on the parsed event."""
    event = new_event("follow", follower_id="a", followee_id="b", event_time=moment)
    line = encode_event(event)
    parsed = parse_event("follows", line)
    assert line_event_time_ms(line) == parsed.event_time_ms
    arrival = parsed.event_time_ms + lag_ms
    assert line_too_late(line, arrival, bound) is too_late(arrival, parsed.event_time_ms, bound)
    assert parsed.event_time_ms == (moment - EPOCH) // timedelta(milliseconds=1)


@pytest.mark.parametrize("line", [b"not json", b"[1]", b"{}", b'{"event_time": 5}',
                                  b'{"event_time": "2026-11-01T00:00:00"}'])
def test_a_line_with_no_event_time_is_never_too_late(line: bytes) -> None:
    # No valid event: the rules refuse it whatever its time, as streaming dead-letters it.
    assert line_event_time_ms(line) is None
    assert not line_too_late(line, 10**15, 1)


def test_streaming_dead_letters_a_late_event_and_applies_the_rest() -> None:
    """``parse_or_dead_letter`` with an arrival: the streaming half of the same test."""
    event = new_event("follow", follower_id="a", followee_id="b",
                      event_time=datetime(2026, 11, 1, tzinfo=UTC))
    payload, at = encode_event(event), event.event_time_ms
    on_time, letter = parse_or_dead_letter("follows", Job.FANOUT, "follows", 0, 7, payload,
                                           at + 1_000, 1_000)
    assert letter is None and on_time.event_id == event.event_id
    late, letter = parse_or_dead_letter("follows", Job.FANOUT, "follows", 0, 7, payload,
                                        at + 1_001, 1_000)
    assert late is None and letter is not None
    dead = json.loads(letter)
    assert (dead["reason"], dead["offset"]) == (TOO_LATE, 7)
    assert "1001 ms" in dead["detail"]
    # No bound, or no arrival: nothing is late.
    for arrival, bound in ((at + 10**12, None), (None, 1)):
        kept, letter = parse_or_dead_letter("follows", Job.FANOUT, "follows", 0, 7, payload,
                                            arrival, bound)
        assert letter is None and kept is not None


def test_the_kafka_timestamp_as_pyflink_hands_it_over() -> None:
    from pyflink.common.time import Instant

    assert arrival_ms(Instant.of_epoch_milli(1_764_547_200_123)) == 1_764_547_200_123
    assert arrival_ms(datetime(2025, 12, 1, 0, 0, 0, 123_999, tzinfo=UTC)) == 1_764_547_200_123
    assert arrival_ms(1_764_547_200_123) == 1_764_547_200_123
    assert arrival_ms(None) is None
    with pytest.raises(TypeError, match="zone"):
        arrival_ms(datetime(2025, 12, 1))  # noqa: DTZ001 (the case refused)


@given(t=st.integers(0, 2**41), bound=st.integers(1, 10**10), ahead=st.integers(0, 10**6))
def test_an_edge_change_is_pruned_only_once_no_event_before_it_can_come(
        t: int, bound: int, ahead: int) -> None:
    """At the watermark ``prune_due`` names (or later), the horizon W - L is past the
    change, and every event still admitted (arriving at W or later) is newer than it."""
    watermark = prune_due(t, bound) + ahead
    horizon = watermark - bound
    assert horizon > t
    assert not too_late(watermark, horizon, bound)  # the horizon itself is still admitted
    assert too_late(watermark, t, bound)  # the change's own time no longer is


def test_prune_edge_drops_old_tombstones_and_keeps_what_a_later_event_needs() -> None:
    tomb = Edge((100, "e1"), [])
    assert prune_edge(tomb, 101) is None
    assert prune_edge(tomb, 100) is tomb  # not older than the horizon: kept as it is
    following = Edge((50, "e0"), [(60, "e2"), (70, "e3"), (200, "e4")])
    kept = prune_edge(following, 100)
    assert kept == Edge(None, [(60, "e2"), (200, "e4")])  # its start (since_ms) stays
    assert kept is not None and kept.since_ms == following.since_ms
    assert prune_edge(kept, 100) is kept
