"""Users: follow and unfollow, counters, profile pages."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from starlette.responses import Response

from serving.auth import ID_PATTERN
from serving.deps import CurrentUser, EventWritesDep, ReaderDep, ResourcesDep
from serving.models import Accepted, PostPage, UserOut
from serving.prepare import FollowChange
from serving.problems import ApiProblem
from serving.responses import (
    PROBLEMS,
    Cursor,
    JsonResponse,
    Limit,
    degraded_headers,
    page_response,
    position_of,
)
from serving.writes import IdempotencyKey

router = APIRouter(prefix="/v1/users", tags=["users"])

UserId = Annotated[str, Path(pattern=ID_PATTERN, description="A user id.")]


def _not_self(user_id: str, user: str) -> None:
    if user_id == user:
        raise ApiProblem(422, "self-follow", "you cannot follow or unfollow yourself",
                         errors=[{"location": "path", "field": "user_id",
                                  "message": "must differ from the caller"}])


@router.put("/{user_id}/follow", status_code=202, response_model=Accepted, responses=PROBLEMS,
            summary="Follow a user")
async def follow(user_id: UserId, user: CurrentUser, writes: EventWritesDep,
                 idempotency_key: IdempotencyKey = None) -> Response:
    """Follow `user_id`: their recent posts merge into the caller's feed."""
    _not_self(user_id, user)
    return await writes.submit(FollowChange("follow", user, user_id), idempotency_key)


@router.delete("/{user_id}/follow", status_code=202, response_model=Accepted,
               responses=PROBLEMS, summary="Unfollow a user")
async def unfollow(user_id: UserId, user: CurrentUser, writes: EventWritesDep,
                   idempotency_key: IdempotencyKey = None) -> Response:
    """Unfollow `user_id`: their posts leave the caller's feed."""
    _not_self(user_id, user)
    return await writes.submit(FollowChange("unfollow", user, user_id), idempotency_key)


@router.get("/{user_id}", response_model=UserOut, responses=PROBLEMS, summary="User counters")
async def get_user(user_id: UserId, user: CurrentUser, reader: ReaderDep) -> Response:
    """Followers, following and posts of a user (zeros for a user with no activity)."""
    counts, degraded = await reader.user_counts(user_id)
    return JsonResponse({"user_id": user_id, **counts}, headers=degraded_headers(degraded))


@router.get("/{user_id}/posts", response_model=PostPage, responses=PROBLEMS,
            summary="A user's posts")
async def user_posts(user_id: UserId, user: CurrentUser, reader: ReaderDep,
                     resources: ResourcesDep, limit: Limit = 25,
                     cursor: Cursor = None) -> Response:
    """The user's own posts, newest first, paged like the feed."""
    scope = f"profile:{user_id}"
    page = await reader.profile(user_id, position_of(cursor, resources, scope), limit)
    return page_response(page, resources, scope)
