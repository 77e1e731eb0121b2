"""The submit path shared by every write that produces an event.

A write is prepared first (``serving.prepare``: the checks that read state, then the event
and the 202 body), then submitted here: made idempotent when the client sent an
Idempotency-Key, produced, answered with 202.

With a key, the first request stores the encoded event and its response in Redis before
producing; a retry with the same key and the same request gets that response back, with
the same event (same event id, post id, comment id) produced again unless Kafka already
acknowledged it, and without being prepared again. The same key on a different request
is refused (422).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

from fastapi import Header
from starlette.responses import Response

from feedline.logs import annotate
from feedline.stores.errors import StoreUnavailable
from feedline.stores.event_publisher import EventPublisher
from feedline.stores.feed_reader import REDIS_DOWN
from feedline.stores.request_guards import IdempotencyRecords, IdempotentRecord
from schemas.event_contracts import Event, InvalidEvent, encode_event, parse_event, role_of
from serving.problems import ApiProblem
from serving.responses import JsonResponse

_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")

IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", max_length=128,
           description="Retrying with the same key returns the first answer and produces the "
                       "same event (1-128 of A-Z a-z 0-9 _ . : -)."),
]


@dataclass(frozen=True, slots=True)
class PreparedWrite:
    """A write whose checks passed: the event to produce and the 202 body answering it."""

    event: Event
    response: dict[str, Any]


class Write(Protocol):
    """One write of a caller, not yet checked."""

    async def prepare(self) -> PreparedWrite:
        """Check the state the write depends on (raising ``ApiProblem``), build its event."""
        ...


def fingerprint(method: str, path: str, body: Any = None) -> str:
    """A hash identifying a request: the same key may only be reused for the same one."""
    text = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def invalid_event_problem(error: InvalidEvent) -> ApiProblem:
    """A 422 naming the field the event contract refused."""
    field = error.detail.split(":", 1)[0].removeprefix("$.") if error.detail.startswith("$.") \
        else "body"
    return ApiProblem(422, "validation-error", f"body {field}: {error.detail}",
                      title="Request validation failed",
                      errors=[{"location": "body", "field": field, "message": error.detail}])


def accepted(body: dict[str, Any], replayed: bool) -> Response:
    """The 202 answering a write (marked when it replays an earlier request)."""
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    return JsonResponse(body, status_code=202, headers=headers)


async def _prepared(write: Write) -> PreparedWrite:
    """``write`` prepared, an event-contract refusal turned into a 422."""
    try:
        return await write.prepare()
    except InvalidEvent as error:
        raise invalid_event_problem(error) from None


def _check_key(key: str) -> None:
    if not _KEY.match(key):
        raise ApiProblem(422, "validation-error",
                         "header Idempotency-Key: use 1-128 of A-Z a-z 0-9 _ . : -",
                         title="Request validation failed",
                         errors=[{"location": "header", "field": "Idempotency-Key",
                                  "message": "use 1-128 of A-Z a-z 0-9 _ . : -"}])


class EventWrites:
    """Submits the writes of one request by one caller."""

    __slots__ = ("method", "path", "publisher", "records", "user_id")

    def __init__(self, publisher: EventPublisher, records: IdempotencyRecords, *,
                 user_id: str, method: str, path: str) -> None:
        self.publisher = publisher
        self.records = records
        self.user_id = user_id
        self.method = method
        self.path = path

    async def submit(self, write: Write, idempotency_key: str | None,
                     body: Any = None) -> Response:
        """Prepare ``write`` and produce its event; 202 with the prepared body.

        ``body`` (the request body as JSON data) identifies the request with the method
        and path. A replay answers what the first request got without preparing ``write``
        again: the state it checked may have changed since (a retried delete after the
        delete was applied still answers 202).
        """
        self.publisher.check_open()
        if idempotency_key is None:
            prepared = await _prepared(write)
            annotate(event_id=prepared.event.event_id)  # the request's log lines carry it
            await self.publisher.publish(prepared.event)
            return accepted(prepared.response, False)
        _check_key(idempotency_key)
        answer, replayed = await self._idempotent(
            write, idempotency_key, fingerprint(self.method, self.path, body))
        annotate(event_id=answer.get("event_id"))
        return accepted(answer, replayed)

    async def _idempotent(self, write: Write, key: str,
                          request_fingerprint: str) -> tuple[dict[str, Any], bool]:
        """The response body, and whether it replays an earlier request with ``key``."""
        try:
            stored = await self.records.get(self.user_id, key)
        except REDIS_DOWN as error:
            raise StoreUnavailable("redis", "Idempotency-Key needs Redis") from error
        replay = stored is not None
        if stored is None:
            prepared = await _prepared(write)
            event = prepared.event
            record = IdempotentRecord(request_fingerprint, encode_event(event).decode(),
                                      prepared.response)
            try:
                stored = await self.records.claim(self.user_id, key, record)
            except REDIS_DOWN as error:
                raise StoreUnavailable("redis", "Idempotency-Key needs Redis") from error
            replay = stored is not record  # a concurrent request with the key got there first
        if stored.fingerprint != request_fingerprint:
            raise ApiProblem(422, "idempotency-key-reused",
                             f"Idempotency-Key {key!r} was used for a different "
                             "request; use a new key for a new request")
        if replay and stored.acknowledged:
            return stored.response, True
        if replay:
            event_type = json.loads(stored.event)["event_type"]
            event = parse_event(role_of(event_type), stored.event)
        annotate(event_id=event.event_id)  # before producing: a 503's lines carry it too
        await self.publisher.publish(event)
        try:
            await self.records.acknowledge(self.user_id, key, stored)
        except REDIS_DOWN:
            pass  # a retry will produce the event again: consumers deduplicate on its id
        return stored.response, replay
