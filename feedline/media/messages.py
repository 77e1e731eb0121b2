"""Messages of the uploaded-media topic (``kafka.media_topic``) and its dead letters.

The API produces ``{"media_id", "owner_id", "requested_at", "source"}`` keyed by media id
when a client completes an upload (``source`` ``api``), and ``feedctl media reprocess``
does too (``reprocess``: processed again even when the generation was processed). A
storage notification may be forwarded as it is: the object resource of a GCS
``OBJECT_FINALIZE`` notification (``{"kind": "storage#object", "name": "media/<id>",
"generation": ...}``) names the media id by its object name.

A record that is neither becomes a dead letter on ``<topic>.dlq`` in the format of the
streaming jobs' (``reason``, ``detail``, source ``topic``/``partition``/``offset``,
``payload_b64``; ``feedctl dlq inspect`` reads it), and so does a message the worker cannot
act on (an unknown media id, an object replaced after it was processed).
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from feedline.stores.media_store import MEDIA_FOLDER

Source = Literal["api", "storage", "reprocess"]
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class InvalidMessage(ValueError):
    """A record of the media topic the worker cannot act on: a dead letter."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class MediaUploaded:
    """An upload to process."""

    media_id: str
    source: Source = "api"
    owner_id: str | None = None
    requested_at: str | None = None
    generation: int | None = None
    """The generation a storage notification named (None: whatever is stored)."""

    @property
    def force(self) -> bool:
        """Process again even when this generation was processed already."""
        return self.source == "reprocess"


def encode(message: MediaUploaded, requested_at: datetime) -> bytes:
    """The record value produced for ``message``."""
    body: dict[str, Any] = {"media_id": message.media_id, "source": message.source,
                            "requested_at": requested_at.isoformat()}
    if message.owner_id is not None:
        body["owner_id"] = message.owner_id
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def parse(payload: bytes | None) -> MediaUploaded:
    """The message in a record's value; raises ``InvalidMessage``."""
    if not payload:
        raise InvalidMessage("empty_message", "the record has no value")
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError) as error:
        raise InvalidMessage("invalid_json", f"not JSON: {error}") from None
    if not isinstance(data, dict):
        raise InvalidMessage("invalid_message", "not a JSON object")
    if data.get("kind") == "storage#object":
        return _from_notification(data)
    media_id = data.get("media_id")
    if not isinstance(media_id, str) or not _ID.match(media_id):
        raise InvalidMessage("invalid_message", "$.media_id: missing or not a media id")
    source = data.get("source", "api")
    if source not in ("api", "storage", "reprocess"):
        raise InvalidMessage("invalid_message", f"$.source: unknown source {source!r}")
    owner = data.get("owner_id")
    return MediaUploaded(media_id, source, owner if isinstance(owner, str) else None,
                         str(data.get("requested_at") or "") or None)


def _from_notification(data: dict[str, Any]) -> MediaUploaded:
    """The upload a GCS object-finalize notification names (other objects: a dead letter)."""
    name = data.get("name")
    folder, _, media_id = str(name).partition("/")
    if folder != MEDIA_FOLDER or not _ID.match(media_id):
        raise InvalidMessage("not_an_upload", f"$.name: {name!r} is not an upload object "
                                              f"({MEDIA_FOLDER}/<media id>)")
    try:
        generation = int(data["generation"]) if data.get("generation") else None
    except (TypeError, ValueError):
        raise InvalidMessage("invalid_message", "$.generation: not a number") from None
    return MediaUploaded(media_id, "storage", None, data.get("timeCreated"), generation)


def dead_letter(topic: str, partition: int, offset: int, payload: bytes | None,
                error: InvalidMessage) -> bytes:
    """The JSON record written to ``<topic>.dlq`` (the streaming jobs' format)."""
    return json.dumps(
        {"reason": error.reason, "detail": error.detail, "topic": topic,
         "partition": partition, "offset": offset,
         "payload_b64": base64.b64encode(payload or b"").decode("ascii")},
        separators=(",", ":"), sort_keys=True).encode()
