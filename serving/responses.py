"""Building responses on the read path (JSON encoded with orjson, no model round trip)."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import Query
from starlette.responses import JSONResponse, Response

from feedline.stores.feed_items import Position, PostView
from feedline.stores.feed_reader import FeedPage
from serving.cursor import MAX_CURSOR_CHARS, InvalidCursor, decode_cursor, encode_cursor
from serving.models import post_json
from serving.observability import DEGRADED
from serving.problems import ApiProblem
from serving.resources import Resources

DEGRADED_HEADER = "X-Feed-Degraded"

Limit = Annotated[int, Query(ge=1, le=100, description="Posts per page (1-100).")]
Cursor = Annotated[str | None, Query(max_length=MAX_CURSOR_CHARS,
                                     description="`next_cursor` of the previous page.")]

#: JSON Schema of problem bodies (``serving.problems``), for the OpenAPI document.
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "request_id": {"type": "string"},
        "errors": {"type": "array", "items": {
            "type": "object", "required": ["location", "field", "message"],
            "properties": {"location": {"type": "string"}, "field": {"type": "string"},
                           "message": {"type": "string"}}}},
    },
}


def problem_doc(description: str) -> dict[str, Any]:
    """An OpenAPI response entry of a problem."""
    return {"description": description,
            "content": {"application/problem+json": {"schema": PROBLEM_SCHEMA}}}


#: Problem responses every authenticated route may give (for the OpenAPI document).
PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: problem_doc("Malformed JSON body or invalid cursor."),
    401: problem_doc("Missing or invalid bearer token."),
    422: problem_doc("Invalid request; `errors` lists each field."),
    429: problem_doc("Rate limit exceeded; see Retry-After."),
    503: problem_doc("A dependency is unavailable; see Retry-After."),
}


class JsonResponse(JSONResponse):
    """``application/json`` encoded with orjson."""

    def render(self, content: Any) -> bytes:
        """Encode ``content``."""
        return orjson.dumps(content)


def position_of(cursor: str | None, resources: Resources, scope: str) -> Position | None:
    """The position a page starts after (None: the newest); 400 on a bad cursor."""
    if cursor is None:
        return None
    try:
        return decode_cursor(cursor, key=resources.cursor_key, scope=scope)
    except InvalidCursor as error:
        raise ApiProblem(400, "invalid-cursor",
                         f"query cursor: {error}; pass the next_cursor of a previous page of "
                         "this listing, or omit it for the first page") from None


def degraded_headers(degraded: str | None) -> dict[str, str]:
    """The header telling clients a read was served without a store."""
    if degraded is None:
        return {}
    DEGRADED.labels(degraded).inc()
    return {DEGRADED_HEADER: degraded}


def page_response(page: FeedPage, resources: Resources, scope: str) -> Response:
    """A ``PostPage`` response."""
    next_cursor = (encode_cursor(page.next, key=resources.cursor_key, scope=scope)
                   if page.next is not None else None)
    body = {"items": [post_json(item, resources.media_url) for item in page.items],
            "next_cursor": next_cursor}
    return JsonResponse(body, headers=degraded_headers(page.degraded))


def post_response(view: PostView, resources: Resources, degraded: str | None) -> Response:
    """A ``PostOut`` response."""
    return JsonResponse(post_json(view, resources.media_url), headers=degraded_headers(degraded))
