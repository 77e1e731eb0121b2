"""The caller's notifications: grouped, newest first, with an unread count and a read marker."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from starlette.responses import Response

from feedline.stores.notification_reader import NotificationItem, NotificationPage
from serving.cursor import encode_cursor
from serving.deps import CurrentUser, ResourcesDep
from serving.models import MarkRead, ReadMarker, UnreadCount, rfc3339_ms
from serving.models import NotificationPage as NotificationPageOut
from serving.resources import Resources
from serving.responses import PROBLEMS, Cursor, JsonResponse, degraded_headers, position_of

router = APIRouter(prefix="/v1/notifications", tags=["notifications"])

SCOPE = "notifications"
Limit = Annotated[int, Query(ge=1, le=100, description="Groups per page (1-100).")]


def item_json(item: NotificationItem) -> dict[str, Any]:
    """A ``NotificationOut`` as plain JSON data."""
    return {"group_key": item.group_key, "type": item.type, "post_id": item.post_id,
            "count": item.count, "actors": list(item.actors),
            "latest_at": rfc3339_ms(item.latest_ms), "unread": item.unread}


def page_json(page: NotificationPage, resources: Resources, scope: str) -> dict[str, Any]:
    """A ``NotificationPage`` body."""
    next_cursor = (encode_cursor(page.next, key=resources.cursor_key, scope=scope)
                   if page.next is not None else None)
    return {"items": [item_json(i) for i in page.items], "next_cursor": next_cursor}


@router.get("", response_model=NotificationPageOut, responses=PROBLEMS,
            summary="Notifications")
async def notifications(user: CurrentUser, resources: ResourcesDep, limit: Limit = 25,
                        cursor: Cursor = None) -> Response:
    """Likes, comments, follows and mentions of the caller, grouped, newest group first.

    A like group counts everyone who likes the post now (an unlike takes one away; a group
    at 0 disappears). Only the newest 500 groups are served. Pass `next_cursor` back as
    `cursor` for the next page. Header `X-Feed-Degraded: redis` marks a page served
    without the cache.
    """
    scope = f"{SCOPE}:{user}"
    page = await resources.notifications.page(user, position_of(cursor, resources, scope),
                                              limit)
    return JsonResponse(page_json(page, resources, scope),
                        headers=degraded_headers(page.degraded))


@router.get("/unread_count", response_model=UnreadCount, responses=PROBLEMS,
            summary="Unread notifications")
async def unread_count(user: CurrentUser, resources: ResourcesDep) -> Response:
    """How many of the caller's groups changed since the last mark-read."""
    count, degraded = await resources.notifications.unread_count(user)
    return JsonResponse({"count": count}, headers=degraded_headers(degraded))


@router.post("/read", response_model=ReadMarker, responses=PROBLEMS,
             summary="Mark notifications read")
async def mark_read(user: CurrentUser, resources: ResourcesDep,
                    body: Annotated[MarkRead | None, Body()] = None) -> Response:
    """Mark every group up to now read (body `{}` or none). The marker never moves back."""
    marker, degraded = await resources.notifications.mark_read(user, int(time.time() * 1000))
    return JsonResponse({"read_through": rfc3339_ms(marker)},
                        headers=degraded_headers(degraded))
