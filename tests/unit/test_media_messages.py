"""Messages of the uploaded-media topic and their dead letters."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from feedline.media import messages
from feedline.media.messages import InvalidMessage, MediaUploaded


def test_a_message_round_trips() -> None:
    at = datetime(2026, 11, 30, 22, 0, tzinfo=UTC)
    sent = MediaUploaded("m-1", "api", "alice")
    got = messages.parse(messages.encode(sent, at))
    assert got == MediaUploaded("m-1", "api", "alice", at.isoformat())
    assert not got.force
    assert messages.parse(messages.encode(MediaUploaded("m-1", "reprocess"), at)).force


def test_a_storage_notification_names_the_upload() -> None:
    resource = {"kind": "storage#object", "name": "media/m-2", "bucket": "b",
                "generation": "1764540000000000", "timeCreated": "2026-11-30T22:00:00Z"}
    got = messages.parse(json.dumps(resource).encode())
    assert (got.media_id, got.source, got.generation) == ("m-2", "storage", 1764540000000000)


@pytest.mark.parametrize(("payload", "reason"), [
    (None, "empty_message"),
    (b"", "empty_message"),
    (b"not json", "invalid_json"),
    (b"[1]", "invalid_message"),
    (b'{"media_id": "has space"}', "invalid_message"),
    (b'{"media_id": "m", "source": "someone"}', "invalid_message"),
    (b'{"kind": "storage#object", "name": "renditions/m/1/w320.jpg"}', "not_an_upload"),
])
def test_what_is_not_a_message_says_why(payload: bytes | None, reason: str) -> None:
    with pytest.raises(InvalidMessage) as refused:
        messages.parse(payload)
    assert refused.value.reason == reason


def test_dead_letters_have_the_streaming_jobs_format() -> None:
    letter = json.loads(messages.dead_letter("media-uploads", 2, 7, b"junk",
                                             InvalidMessage("invalid_json", "not JSON")))
    assert letter == {"reason": "invalid_json", "detail": "not JSON", "topic": "media-uploads",
                      "partition": 2, "offset": 7,
                      "payload_b64": base64.b64encode(b"junk").decode()}
