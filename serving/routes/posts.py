"""Posts and engagement on them: create, delete, read, like, comment."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from feedline.stores.feed_reader import PostLookup
from feedline.stores.media_store import MediaRecord
from schemas.event_contracts import new_event
from serving.auth import ID_PATTERN
from serving.deps import CurrentUser, ReaderDep, ResourcesDep
from serving.ids import minted_comment_of, minted_post_of, new_comment_id, new_post_id
from serving.models import (
    Accepted,
    CommentAccepted,
    CommentCreate,
    PostAccepted,
    PostCreate,
    PostOut,
)
from serving.problems import ApiProblem
from serving.resources import Resources
from serving.responses import PROBLEMS, JsonResponse, post_response, problem_doc
from serving.writes import Built, IdempotencyKey, fingerprint, publish

router = APIRouter(prefix="/v1/posts", tags=["posts"])

PostId = Annotated[str, Path(pattern=ID_PATTERN, description="A post id.")]
CommentId = Annotated[str, Path(pattern=ID_PATTERN, description="A comment id.")]

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: problem_doc("No such post (or it was deleted).")}
_FORBIDDEN: dict[int | str, dict[str, Any]] = {403: problem_doc("Only the author may do this.")}


def _accepted(body: dict[str, Any], replayed: bool) -> Response:
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    return JsonResponse(body, status_code=202, headers=headers)


def _field_problem(field: str, messages: list[tuple[str, str]]) -> ApiProblem:
    errors = [{"location": "body", "field": where, "message": text} for where, text in messages]
    listed = "; ".join(f"body {where}: {text}" for where, text in messages[:5])
    return ApiProblem(422, "invalid-media" if field == "media_ids" else "validation-error",
                      listed, title="Request validation failed", errors=errors)


async def _checked_media(resources: Resources, user: str,
                         media_ids: list[str]) -> list[MediaRecord]:
    """The caller's uploaded media, in order; 422 naming every id that is not usable."""
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    for index, media_id in enumerate(media_ids):
        if media_id in seen:
            problems.append((f"media_ids[{index}]", f"{media_id} is listed twice"))
        seen.add(media_id)
    if problems:
        raise _field_problem("media_ids", problems)
    records = await resources.media.get_many(media_ids)
    uploads = await resources.uploads()
    mine = [records.get(m) for m in media_ids]
    stats = await asyncio.gather(*(asyncio.to_thread(uploads.stat, m) for m, r
                                   in zip(media_ids, mine, strict=True)
                                   if r is not None and r.owner_id == user))
    found = iter(stats)
    for index, (media_id, record) in enumerate(zip(media_ids, mine, strict=True)):
        where = f"media_ids[{index}]"
        if record is None or record.owner_id != user:
            problems.append((where, f"{media_id} is not a media upload of yours "
                                    "(announce one with POST /v1/media)"))
            continue
        stored = next(found)
        if stored is None:
            problems.append((where, f"{media_id} has not been uploaded yet "
                                    "(PUT the file to its upload_url first)"))
        elif stored.size != record.bytes:
            problems.append((where, f"{media_id} holds {stored.size} bytes, "
                                    f"{record.bytes} were announced"))
        elif stored.content_type and stored.content_type != record.content_type:
            problems.append((where, f"{media_id} was uploaded as {stored.content_type}, "
                                    f"announced as {record.content_type}"))
    if problems:
        raise _field_problem("media_ids", problems)
    return [r for r in mine if r is not None]


@router.post("", status_code=202, response_model=PostAccepted, responses=PROBLEMS,
             summary="Publish a post")
async def create_post(body: PostCreate, user: CurrentUser, resources: ResourcesDep,
                      request: Request, idempotency_key: IdempotencyKey = None) -> Response:
    """Publish uploaded media with a caption; it reaches followers' feeds asynchronously."""
    media: list[MediaRecord] = []

    async def check() -> None:
        nonlocal media
        media = await _checked_media(resources, user, body.media_ids)

    def build() -> Built:
        post_id = new_post_id(resources.id_key, user)
        event = new_event("post_created", author_id=user, post_id=post_id,
                          caption=body.caption,
                          media=[{"media_id": m.media_id, "content_type": m.content_type,
                                  "uri": m.uri} for m in media])
        return event, {"post_id": post_id, "event_id": event.event_id}

    answer, replayed = await publish(
        resources, user, idempotency_key=idempotency_key, build=build, check=check,
        request_fingerprint=fingerprint("POST", request.url.path, body.model_dump()))
    return _accepted(answer, replayed)


async def _live_post(reader: Any, post_id: str) -> PostLookup:
    found: PostLookup = await reader.lookup(post_id)
    if found.author_id is None or found.deleted:
        raise ApiProblem(404, "post-not-found", f"post {post_id} does not exist or was deleted")
    return found


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
async def delete_post(post_id: PostId, user: CurrentUser, reader: ReaderDep,
                      resources: ResourcesDep, request: Request,
                      idempotency_key: IdempotencyKey = None) -> Response:
    """Retract the caller's post from every feed."""

    async def check() -> None:
        found = await reader.lookup(post_id)
        if found.author_id is None:
            # Not stored yet: accept only a post id this API minted for the caller.
            if not minted_post_of(resources.id_key, post_id, user):
                raise ApiProblem(404, "post-not-found", f"post {post_id} does not exist")
        elif found.author_id != user:
            raise ApiProblem(403, "not-the-author",
                             f"only the author of post {post_id} may delete it")
        elif found.deleted:
            raise ApiProblem(404, "post-not-found", f"post {post_id} was already deleted")

    def build() -> Built:
        event = new_event("post_deleted", author_id=user, post_id=post_id)
        return event, {"event_id": event.event_id}

    answer, replayed = await publish(resources, user, idempotency_key=idempotency_key,
                                     build=build, check=check,
                                     request_fingerprint=fingerprint("DELETE", request.url.path))
    return _accepted(answer, replayed)


async def _engage(event_type: str, post_id: str, user: str, reader: Any,
                  resources: Resources, request: Request, key: str | None) -> Response:
    found = PostLookup(None)

    async def check() -> None:
        nonlocal found
        found = await _live_post(reader, post_id)

    def build() -> Built:
        event = new_event(event_type, user_id=user, post_id=post_id,
                          post_author_id=found.author_id)
        return event, {"event_id": event.event_id}

    answer, replayed = await publish(
        resources, user, idempotency_key=key, build=build, check=check,
        request_fingerprint=fingerprint(request.method, request.url.path))
    return _accepted(answer, replayed)


@router.put("/{post_id}/like", status_code=202, response_model=Accepted,
            responses={**PROBLEMS, **_NOT_FOUND}, summary="Like a post")
async def like(post_id: PostId, user: CurrentUser, reader: ReaderDep, resources: ResourcesDep,
               request: Request, idempotency_key: IdempotencyKey = None) -> Response:
    """Like a post (liking twice counts once)."""
    return await _engage("like", post_id, user, reader, resources, request, idempotency_key)


@router.delete("/{post_id}/like", status_code=202, response_model=Accepted,
               responses={**PROBLEMS, **_NOT_FOUND}, summary="Unlike a post")
async def unlike(post_id: PostId, user: CurrentUser, reader: ReaderDep,
                 resources: ResourcesDep, request: Request,
                 idempotency_key: IdempotencyKey = None) -> Response:
    """Take a like back (no effect when there was none)."""
    return await _engage("unlike", post_id, user, reader, resources, request, idempotency_key)


@router.post("/{post_id}/comments", status_code=202, response_model=CommentAccepted,
             responses={**PROBLEMS, **_NOT_FOUND}, summary="Comment on a post")
async def comment(post_id: PostId, body: CommentCreate, user: CurrentUser, reader: ReaderDep,
                  resources: ResourcesDep, request: Request,
                  idempotency_key: IdempotencyKey = None) -> Response:
    """Add a comment; the answer names the new comment's id."""
    found = PostLookup(None)

    async def check() -> None:
        nonlocal found
        found = await _live_post(reader, post_id)

    def build() -> Built:
        comment_id = new_comment_id(resources.id_key, user, post_id)
        event = new_event("comment", user_id=user, post_id=post_id, comment_id=comment_id,
                          text=body.text, post_author_id=found.author_id)
        return event, {"comment_id": comment_id, "event_id": event.event_id}

    answer, replayed = await publish(
        resources, user, idempotency_key=idempotency_key, build=build, check=check,
        request_fingerprint=fingerprint("POST", request.url.path, body.model_dump()))
    return _accepted(answer, replayed)


@router.delete("/{post_id}/comments/{comment_id}", status_code=202, response_model=Accepted,
               responses={**PROBLEMS, **_NOT_FOUND, **_FORBIDDEN}, summary="Delete a comment")
async def delete_comment(post_id: PostId, comment_id: CommentId, user: CurrentUser,
                         reader: ReaderDep, resources: ResourcesDep, request: Request,
                         idempotency_key: IdempotencyKey = None) -> Response:
    """Delete a comment: its author or the post's author may."""
    found = PostLookup(None)

    async def check() -> None:
        nonlocal found
        found = await _live_post(reader, post_id)
        if found.author_id != user and not minted_comment_of(resources.id_key, comment_id,
                                                              user, post_id):
            raise ApiProblem(403, "not-the-author", f"only the author of comment {comment_id} "
                                                    f"or of post {post_id} may delete it")

    def build() -> Built:
        event = new_event("comment_deleted", user_id=user, post_id=post_id,
                          comment_id=comment_id, post_author_id=found.author_id)
        return event, {"event_id": event.event_id}

    answer, replayed = await publish(resources, user, idempotency_key=idempotency_key,
                                     build=build, check=check,
                                     request_fingerprint=fingerprint("DELETE", request.url.path))
    return _accepted(answer, replayed)
