"""Parsing a Kafka record for a streaming job: the event, or the dead letter it becomes.

Pure (no PyFlink): ``job_graph.parsed_events`` runs it inside Flink, the unit tests and
``jobs/dlq.py`` read the dead-letter format from here.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from feedline.rules.keys import Job, UnknownEventType, rule_keys
from feedline.rules.retention import TOO_LATE, too_late
from schemas.event_contracts import InvalidEvent, moment_ms, parse_event


@dataclass(frozen=True)
class Refusal:
    """Why a valid event is not applied (a dead letter's ``reason`` and ``detail``)."""

    reason: str
    detail: str


def dead_letter(
    topic: str, partition: int, offset: int, payload: bytes, error: InvalidEvent | Refusal
) -> str:
    """The JSON record written to ``<topic>.dlq``: reason, source position, original bytes."""
    return json.dumps(
        {
            "reason": error.reason,
            "detail": error.detail,
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "payload_b64": base64.b64encode(payload).decode("ascii"),
        },
        separators=(",", ":"),
        sort_keys=True,
    )


def payload_event_id(payload: bytes) -> str | None:
    """The ``event_id`` of a record's bytes when they are a JSON object that has one."""
    try:
        record = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    found = record.get("event_id") if isinstance(record, dict) else None
    return found if isinstance(found, str) and found.isprintable() else None


def dead_letter_line(topic: str, partition: int, offset: int, payload: bytes,
                     letter: str) -> str:
    """The log line of a dead letter, with ``event_id=…`` when the bytes carry one.

    In Flink the line goes through the Python worker's log handler to the TaskManager's
    log, where ``feedctl local logs --grep EVENT_ID`` finds it (the text is all it keeps).
    """
    reason = json.loads(letter).get("reason", "?")
    event_id = payload_event_id(payload)
    line = f"dead letter {topic}[{partition}]@{offset}: {reason}"
    return f"{line} event_id={event_id}" if event_id else line


def parse_or_dead_letter(
    role: str, job: Job, topic: str, partition: int, offset: int, payload: bytes,
    arrival_ms: int | None = None, lateness_bound_ms: int | None = None,
) -> tuple[Any, str | None]:
    """(event, None) for a valid record; (None, dead-letter JSON) for a broken one.

    A valid event of a type no rule knows is broken too (``unknown_event_type``): routing
    it to ``job``'s keys would fail, and the job must keep going. So is a valid event that
    arrived (``arrival_ms``, its record's Kafka timestamp) more than ``lateness_bound_ms``
    after its own time (``too_late``: ``feedline.rules.retention``, which the rebuild
    applies to the same two numbers).
    """
    try:
        event = parse_event(role, payload)
        rule_keys(event, job)
    except InvalidEvent as error:
        return None, dead_letter(topic, partition, offset, payload, error)
    except UnknownEventType as error:
        invalid = InvalidEvent("unknown_event_type", f"$.event_type: {error}")
        return None, dead_letter(topic, partition, offset, payload, invalid)
    if arrival_ms is not None and too_late(arrival_ms, event.event_time_ms, lateness_bound_ms):
        late = Refusal(TOO_LATE, f"$.event_time: arrived {arrival_ms - event.event_time_ms} ms "
                                 f"after it, more than the bound {lateness_bound_ms} ms")
        return None, dead_letter(topic, partition, offset, payload, late)
    return event, None


def arrival_ms(value: Any) -> int | None:
    """A record's Kafka timestamp in epoch milliseconds (None when absent).

    As the Table source's ``TIMESTAMP_LTZ(3)`` metadata column reaches Python: a PyFlink
    ``Instant``; an aware ``datetime`` or epoch milliseconds are accepted too.
    """
    if value is None:
        return None
    if isinstance(value, int):
        return value
    if hasattr(value, "to_epoch_milli"):
        return int(value.to_epoch_milli())
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise TypeError(f"a Kafka timestamp without a zone: {value!r}")
        return moment_ms(value)
    raise TypeError(f"unexpected Kafka timestamp {value!r} ({type(value).__name__})")
