"""Posts and engagement on them: create, delete, read, like, comment."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path
from starlette.responses import Response

from serving.auth import ID_PATTERN
from serving.deps import CurrentUser, EventWritesDep, IdKey, MediaCheckDep, ReaderDep, ResourcesDep
from serving.models import (
    Accepted,
    CommentAccepted,
    CommentCreate,
    PostAccepted,
    PostCreate,
    PostOut,
)
from serving.prepare import (
    CreateComment,
    CreatePost,
    DeleteComment,
    DeletePost,
    Engagement,
)
from serving.problems import ApiProblem
from serving.responses import PROBLEMS, post_response, problem_doc
from serving.writes import IdempotencyKey

router = APIRouter(prefix="/v1/posts", tags=["posts"])

PostId = Annotated[str, Path(pattern=ID_PATTERN, description="A post id.")]
CommentId = Annotated[str, Path(pattern=ID_PATTERN, description="A comment id.")]

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: problem_doc("No such post (or it was deleted).")}
_FORBIDDEN: dict[int | str, dict[str, Any]] = {403: problem_doc("Only the author may do this.")}


@router.post("", status_code=202, response_model=PostAccepted,
             responses={**PROBLEMS, 409: problem_doc("A media upload is still processing.")},
             summary="Publish a post")
async def create_post(body: PostCreate, user: CurrentUser, media: MediaCheckDep, id_key: IdKey,
                      writes: EventWritesDep, idempotency_key: IdempotencyKey = None) -> Response:
    """Publish processed media with a caption; it reaches followers' feeds asynchronously.

    Every media id must be `ready` (`GET /v1/media/{id}`): 409 while one is processing,
    422 when one was rejected.
    """
    response = await writes.submit(CreatePost(user, body, media, id_key), idempotency_key,
                                   body.model_dump())
    await media.media.published(body.media_ids, datetime.now(UTC))  # readable by anyone now
    return response


@router.get("/{post_id}", response_model=PostOut,
            responses={**PROBLEMS, **_NOT_FOUND}, summary="Read a post")
async def get_post(post_id: PostId, user: CurrentUser, reader: ReaderDep,
                   resources: ResourcesDep) -> Response:
    """A post with its like and comment counts; 404 once it is deleted."""
    view, degraded = await reader.post(post_id)
    if view is None:
        raise ApiProblem(404, "post-not-found", f"post {post_id} does not exist or was deleted")
    return post_response(view, resources, degraded)


@router.delete("/{post_id}", status_code=202, response_model=Accepted,
               responses={**PROBLEMS, **_NOT_FOUND, **_FORBIDDEN}, summary="Delete a post")
async def delete_post(post_id: PostId, user: CurrentUser, reader: ReaderDep, id_key: IdKey,
                      writes: EventWritesDep, idempotency_key: IdempotencyKey = None) -> Response:
    """Retract the caller's post from every feed."""
    return await writes.submit(DeletePost(user, post_id, reader, id_key), idempotency_key)


@router.put("/{post_id}/like", status_code=202, response_model=Accepted,
            responses={**PROBLEMS, **_NOT_FOUND}, summary="Like a post")
async def like(post_id: PostId, user: CurrentUser, reader: ReaderDep, writes: EventWritesDep,
               idempotency_key: IdempotencyKey = None) -> Response:
    """Like a post (liking twice counts once)."""
    return await writes.submit(Engagement("like", user, post_id, reader), idempotency_key)


@router.delete("/{post_id}/like", status_code=202, response_model=Accepted,
               responses={**PROBLEMS, **_NOT_FOUND}, summary="Unlike a post")
async def unlike(post_id: PostId, user: CurrentUser, reader: ReaderDep, writes: EventWritesDep,
                 idempotency_key: IdempotencyKey = None) -> Response:
    """Take a like back (no effect when there was none)."""
    return await writes.submit(Engagement("unlike", user, post_id, reader), idempotency_key)


@router.post("/{post_id}/comments", status_code=202, response_model=CommentAccepted,
             responses={**PROBLEMS, **_NOT_FOUND}, summary="Comment on a post")
async def comment(post_id: PostId, body: CommentCreate, user: CurrentUser, reader: ReaderDep,
                  id_key: IdKey, writes: EventWritesDep,
                  idempotency_key: IdempotencyKey = None) -> Response:
    """Add a comment; the answer names the new comment's id."""
    return await writes.submit(CreateComment(user, post_id, body, reader, id_key),
                               idempotency_key, body.model_dump())


@router.delete("/{post_id}/comments/{comment_id}", status_code=202, response_model=Accepted,
               responses={**PROBLEMS, **_NOT_FOUND, **_FORBIDDEN}, summary="Delete a comment")
async def delete_comment(post_id: PostId, comment_id: CommentId, user: CurrentUser,
                         reader: ReaderDep, id_key: IdKey, writes: EventWritesDep,
                         idempotency_key: IdempotencyKey = None) -> Response:
    """Delete a comment: its author or the post's author may."""
    return await writes.submit(DeleteComment(user, post_id, comment_id, reader, id_key),
                               idempotency_key)
