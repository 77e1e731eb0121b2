"""Realtime push: the caller's feed and notification events as Server-Sent Events."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Header
from starlette.responses import Response

from feedline.stores.cluster_push import push_subscription
from feedline.stores.errors import StoreUnavailable
from feedline.stores.feed_reader import REDIS_DOWN
from schemas.redis_push import PUSH_WINDOW
from serving.deps import CurrentUser, ResourcesDep
from serving.problems import ApiProblem
from serving.responses import PROBLEMS, problem_doc
from serving.sse import EventStream

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/stream", tags=["stream"])

LastEventId = Annotated[str | None, Header(
    max_length=200, description="The `id` of the last event received, to resume after it.")]

_STREAM_DOC = f"""\
`text/event-stream`, one event per change, each with an `id`:

- `event: feed`, `data: {{"post_id", "author_id", "created_at"}}`: a post entered the home
  feed (a new post of someone followed, a celebrity's included, or posts merged by a follow);
- `event: delete`, `data: {{"post_id"}}`: a post left it (deleted, or its author unfollowed);
- `event: notification`, `data:` a notification group as it is now (the fields of
  `GET /v1/notifications` items but `unread`; `count` 0: the group is gone);
- `event: reset`: events after `Last-Event-ID` are no longer kept: reload, then carry on.

Comment lines (`: keep-alive`) are sent when idle. Reconnect with `Last-Event-ID` to get
what was missed: about the last {PUSH_WINDOW} events per stream are kept. Delivery is at
least once: apply events by `post_id` / `group_key`.
"""

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "An endless event stream.",
          "content": {"text/event-stream": {"schema": {"type": "string"}}}},
    **PROBLEMS,
    400: problem_doc("Malformed `Last-Event-ID`."),
    429: problem_doc("Rate limit exceeded, or this user has too many streams open "
                     "(`api.stream_max_per_user`); see Retry-After."),
    503: problem_doc("Redis is unavailable, or this server holds its most streams "
                     "(`api.stream_max_per_worker`); see Retry-After."),
}


@router.get("", status_code=200, response_class=EventStream, responses=_RESPONSES,
            summary="Realtime events (Server-Sent Events)", description=_STREAM_DOC)
async def stream(user: CurrentUser, resources: ResourcesDep,
                 last_event_id: LastEventId = None) -> Response:
    """Open the caller's event stream."""
    api = resources.settings.api
    subscription = push_subscription(resources.push_redis, resources.keys, user,
                                     block_ms=round(api.stream_heartbeat_s * 1000))

    async def celebrities() -> list[str] | None:
        try:
            return await resources.posts.followed_celebrities(user)
        except StoreUnavailable as error:  # keep the ones followed; try again later
            log.warning("stream of %s: celebrities not refreshed (%s)", user, error)
            return None

    followed = await celebrities()
    release = resources.stream_slots.acquire(user)
    try:
        reset = await subscription.start(followed or [], last_event_id)
    except ValueError:
        release()
        raise ApiProblem(400, "invalid-last-event-id",
                         "header Last-Event-ID: not an id this stream sent; reconnect "
                         "without it to start from now") from None
    except REDIS_DOWN as error:
        release()
        raise StoreUnavailable("redis", f"push streams unavailable: {error}") from None
    except BaseException:
        release()
        raise
    return EventStream(subscription, celebrities=celebrities, release=release, reset=reset,
                       heartbeat_s=api.stream_heartbeat_s,
                       send_timeout_s=api.stream_send_timeout_s)
