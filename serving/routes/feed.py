"""The caller's home feed."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from feedline.stores.request_guards import RateLimited
from serving import deps
from serving.deps import AuthenticatedUser, ResourcesDep, rate_limited
from serving.models import PostPage
from serving.responses import PROBLEMS, Cursor, Limit, page_response, position_of

router = APIRouter(prefix="/v1/feed", tags=["feed"])

FEED_SCOPE = "feed"


@router.get("", response_model=PostPage, responses=PROBLEMS, summary="Home feed")
async def home_feed(user: AuthenticatedUser, resources: ResourcesDep, limit: Limit = 25,
                    cursor: Cursor = None) -> Response:
    """Posts of the people the caller follows, newest first, deleted posts left out.

    Pass `next_cursor` back as `cursor` for the next page; pages stay consistent while new
    posts arrive. Header `X-Feed-Degraded: redis` marks a page served without the cache.
    """
    after = position_of(cursor, resources, f"{FEED_SCOPE}:{user}")
    now = deps.rate_clock()  # looked up per call: a test can hold it still
    limits = resources.user_limits
    if resources.guards_share_cache and limits.breaker.allows():
        # The rate limit is counted by the page read itself: one Redis round trip in all.
        rate = resources.rate_limiter.window(user, now)
    else:  # counted apart: in the guards' own Redis, or in process while Redis is down
        rate = None
        decision = await limits.check(user, now)
        if not decision.allowed:
            raise rate_limited(decision)
    try:
        page = await resources.reader.home(user, after, limit, rate)
    except RateLimited as refused:
        raise rate_limited(refused.decision) from None
    if rate is not None and page.degraded:  # Redis failed before counting: count here
        decision = limits.local.check(user, now)
        if not decision.allowed:
            raise rate_limited(decision)
    return page_response(page, resources, f"{FEED_SCOPE}:{user}")
