"""Dead-letter records and fix files, without a broker."""

from __future__ import annotations

import json

from jobs.dlq import decode_letter, load_fixes
from pipelines.streaming.parse import dead_letter
from schemas.event_contracts import InvalidEvent

EVENT = {"event_id": "fixed000001", "event_type": "follow",
         "event_time": "2026-11-01T00:00:00Z", "schema_version": 1,
         "follower_id": "a", "followee_id": "b"}


def test_a_dead_letter_decodes_with_its_source_and_payload() -> None:
    payload = json.dumps({"event_id": "abc12345", "event_type": "follow"}).encode()
    letter = dead_letter("follows", 2, 41, payload, InvalidEvent("missing_field", "$.x"))
    decoded = decode_letter(0, 7, letter.encode())
    assert (decoded.reason, decoded.source, decoded.payload) == (
        "missing_field", "follows[2]@41", payload)
    assert decoded.event_id == "abc12345"
    assert decode_letter(0, 8, b"junk").reason == "malformed_dead_letter"


def test_fix_files_match_by_event_id_or_dlq_offset_and_reject_invalid_lines() -> None:
    lines = [json.dumps(EVENT),
             json.dumps({"dlq_offset": 12, "event": dict(EVENT, event_id="fixed000002")}),
             json.dumps(dict(EVENT, followee_id="a")),  # follower == followee
             "{not json", ""]
    by_id, by_offset, problems = load_fixes("follows", lines)
    assert set(by_id) == {"fixed000001"}
    assert set(by_offset) == {12}
    assert len(problems) == 2
