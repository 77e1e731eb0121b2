"""The write path shared by every route that changes something.

Build the event, make it idempotent when the client sent an Idempotency-Key, produce it,
answer 202.

With a key, the first request stores the encoded event and its response in Redis before
producing; a retry with the same key and the same request gets that response back, with
the same event (same event id, post id, comment id) produced again unless Kafka already
acknowledged it. The same key on a different request is refused (422).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Header

from feedline.stores.errors import StoreUnavailable
from feedline.stores.feed_reader import REDIS_DOWN
from feedline.stores.request_guards import IdempotentRecord
from schemas.event_contracts import Event, InvalidEvent, encode_event, parse_event, role_of
from serving.problems import ApiProblem
from serving.resources import Resources

_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")

IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", max_length=128,
           description="Retrying with the same key returns the first answer and produces the "
                       "same event (1-128 of A-Z a-z 0-9 _ . : -)."),
]

Built = tuple[Event, dict[str, Any]]


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


def build_checked(build: Callable[[], Built]) -> Built:
    """Run ``build``, turning an event-contract refusal into a 422."""
    try:
        return build()
    except InvalidEvent as error:
        raise invalid_event_problem(error) from None


async def publish(resources: Resources, user_id: str, *, idempotency_key: str | None,
                  request_fingerprint: str, build: Callable[[], Built],
                  check: Callable[[], Awaitable[None]] | None = None,
                  ) -> tuple[dict[str, Any], bool]:
    """Produce the event ``build`` makes, after ``check`` (the state checks) passes.

    Returns the response body and whether it replays an earlier request with the same
    Idempotency-Key. A replay answers what the first request got without running ``check``
    again: the state it checked may have changed since (a retried delete after the delete
    was applied still answers 202).
    """
    publisher = resources.publisher
    publisher.check_open()
    if idempotency_key is None:
        if check is not None:
            await check()
        event, response = build_checked(build)
        await publisher.publish(event)
        return response, False
    if not _KEY.match(idempotency_key):
        raise ApiProblem(422, "validation-error",
                         "header Idempotency-Key: use 1-128 of A-Z a-z 0-9 _ . : -",
                         title="Request validation failed",
                         errors=[{"location": "header", "field": "Idempotency-Key",
                                  "message": "use 1-128 of A-Z a-z 0-9 _ . : -"}])
    try:
        stored = await resources.idempotency.get(user_id, idempotency_key)
    except REDIS_DOWN as error:
        raise StoreUnavailable("redis", "Idempotency-Key needs Redis") from error
    replay = stored is not None
    if stored is None:
        if check is not None:
            await check()
        event, response = build_checked(build)
        record = IdempotentRecord(request_fingerprint, encode_event(event).decode(), response)
        try:
            stored = await resources.idempotency.claim(user_id, idempotency_key, record)
        except REDIS_DOWN as error:
            raise StoreUnavailable("redis", "Idempotency-Key needs Redis") from error
        replay = stored is not record  # a concurrent request with the key got there first
    if stored.fingerprint != request_fingerprint:
        raise ApiProblem(422, "idempotency-key-reused",
                         f"Idempotency-Key {idempotency_key!r} was used for a different "
                         "request; use a new key for a new request")
    if replay and stored.acknowledged:
        return stored.response, True
    if replay:
        event_type = json.loads(stored.event)["event_type"]
        event = parse_event(role_of(event_type), stored.event)
    await publisher.publish(event)
    try:
        await resources.idempotency.acknowledge(user_id, idempotency_key, stored)
    except REDIS_DOWN:
        pass  # a retry will produce the event again: consumers deduplicate on its id
    return stored.response, replay
