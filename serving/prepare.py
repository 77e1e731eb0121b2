"""The prepare step of each write: the checks that read state, then the event and its answer.

One class per kind of write, holding what the caller asked and the stores its checks read.
``EventWrites.submit`` (``serving.writes``) calls ``prepare`` at most once per request, and
not at all when the request replays an earlier one with the same Idempotency-Key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from feedline.rules.effects import MediaRef, Rendition
from feedline.stores.feed_reader import FeedReader, PostLookup
from feedline.stores.media_store import MediaRecord, MediaStore, MediaUploads
from schemas.event_contracts import new_event
from serving.ids import minted_comment_of, minted_post_of, new_comment_id, new_post_id
from serving.models import CommentCreate, PostCreate
from serving.problems import ApiProblem
from serving.writes import PreparedWrite

#: Builds the object-storage side of media on first use (``Resources.uploads``).
MediaUploadsSource = Callable[[], Awaitable[MediaUploads]]


def _field_problem(field: str, messages: list[tuple[str, str]]) -> ApiProblem:
    errors = [{"location": "body", "field": where, "message": text} for where, text in messages]
    listed = "; ".join(f"body {where}: {text}" for where, text in messages[:5])
    return ApiProblem(422, "invalid-media" if field == "media_ids" else "validation-error",
                      listed, title="Request validation failed", errors=errors)


class MediaCheck:
    """Checks that media ids name uploads of the caller, announced and then uploaded."""

    def __init__(self, media: MediaStore, uploads: MediaUploadsSource) -> None:
        self.media = media
        self.uploads = uploads

    async def uploaded_by(self, user: str, media_ids: list[str]) -> list[MediaRecord]:
        """The caller's uploaded media, in order; 422 naming every id that is not usable."""
        problems: list[tuple[str, str]] = []
        seen: set[str] = set()
        for index, media_id in enumerate(media_ids):
            if media_id in seen:
                problems.append((f"media_ids[{index}]", f"{media_id} is listed twice"))
            seen.add(media_id)
        if problems:
            raise _field_problem("media_ids", problems)
        records = await self.media.get_many(media_ids)
        uploads = await self.uploads()
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
        usable = [r for r in mine if r is not None]
        _check_processed(usable)
        return usable


def _check_processed(records: list[MediaRecord]) -> None:
    """422 naming each rejected upload, else 409 naming each one not processed yet."""
    refused = [(f"media_ids[{i}]", f"{r.media_id} was rejected: {r.reason}")
               for i, r in enumerate(records) if r.status == "rejected"]
    if refused:
        raise _field_problem("media_ids", refused)
    waiting = [(i, r) for i, r in enumerate(records) if r.status != "ready"]
    if waiting:
        errors = [{"location": "body", "field": f"media_ids[{i}]",
                   "message": f"{r.media_id} is still processing" if r.completed else
                   f"{r.media_id} was not completed (POST /v1/media/{r.media_id}/complete)"}
                  for i, r in waiting]
        raise ApiProblem(409, "media-processing",
                         "; ".join(e["message"] for e in errors[:5])
                         + "; retry once GET /v1/media/{id} says ready",
                         title="Media not ready", errors=errors)


def shown_media(record: MediaRecord) -> dict[str, Any]:
    """A post's media item: its largest rendition and what the media worker found.

    The item names the largest rendition (its ``uri``) and carries the upload's dimensions,
    every rendition and the placeholder. Renditions are written by the media worker only,
    under the generation it processed, so the post pins that generation: nothing uploaded
    later changes what it shows. The metadata travels in the event (``post_created``
    version 2), so feeds and a rebuild from the archive show it without reading the media
    records again; unknown values are left out.
    """
    shown = record.renditions[0] if record.renditions else record
    renditions = tuple(Rendition(r.uri, r.width, r.height, r.content_type)
                       for r in record.renditions)
    return MediaRef(record.media_id, shown.content_type, shown.uri, record.width,
                    record.height, record.duration_ms, renditions, record.placeholder).to_json()


async def live_post(reader: FeedReader, post_id: str) -> PostLookup:
    """Author and state of a post that exists and is not deleted; 404 otherwise."""
    found = await reader.lookup(post_id)
    if found.author_id is None or found.deleted:
        raise ApiProblem(404, "post-not-found", f"post {post_id} does not exist or was deleted")
    return found


@dataclass(frozen=True, slots=True)
class CreatePost:
    """Publish uploaded media with a caption: every id must be an upload of the author."""

    author_id: str
    body: PostCreate
    media: MediaCheck
    id_key: bytes

    async def prepare(self) -> PreparedWrite:
        """A ``post_created`` event under a freshly minted post id."""
        media = await self.media.uploaded_by(self.author_id, self.body.media_ids)
        post_id = new_post_id(self.id_key, self.author_id)
        event = new_event("post_created", author_id=self.author_id, post_id=post_id,
                          caption=self.body.caption,
                          media=[shown_media(m) for m in media])
        return PreparedWrite(event, {"post_id": post_id, "event_id": event.event_id})


@dataclass(frozen=True, slots=True)
class DeletePost:
    """Retract a post: only its author may."""

    author_id: str
    post_id: str
    reader: FeedReader
    id_key: bytes

    async def prepare(self) -> PreparedWrite:
        """A ``post_deleted`` event; 404 or 403 unless the caller wrote a live post."""
        found = await self.reader.lookup(self.post_id)
        if found.author_id is None:
            # Not stored yet: accept only a post id this API minted for the caller.
            if not minted_post_of(self.id_key, self.post_id, self.author_id):
                raise ApiProblem(404, "post-not-found", f"post {self.post_id} does not exist")
        elif found.author_id != self.author_id:
            raise ApiProblem(403, "not-the-author",
                             f"only the author of post {self.post_id} may delete it")
        elif found.deleted:
            raise ApiProblem(404, "post-not-found", f"post {self.post_id} was already deleted")
        event = new_event("post_deleted", author_id=self.author_id, post_id=self.post_id)
        return PreparedWrite(event, {"event_id": event.event_id})


@dataclass(frozen=True, slots=True)
class Engagement:
    """Like a live post, or take a like back."""

    event_type: Literal["like", "unlike"]
    user_id: str
    post_id: str
    reader: FeedReader

    async def prepare(self) -> PreparedWrite:
        """The event, naming the post's author; 404 unless the post is live."""
        found = await live_post(self.reader, self.post_id)
        event = new_event(self.event_type, user_id=self.user_id, post_id=self.post_id,
                          post_author_id=found.author_id)
        return PreparedWrite(event, {"event_id": event.event_id})


@dataclass(frozen=True, slots=True)
class CreateComment:
    """Comment on a live post."""

    user_id: str
    post_id: str
    body: CommentCreate
    reader: FeedReader
    id_key: bytes

    async def prepare(self) -> PreparedWrite:
        """A ``comment`` event under a freshly minted comment id; 404 unless the post is live."""
        found = await live_post(self.reader, self.post_id)
        comment_id = new_comment_id(self.id_key, self.user_id, self.post_id)
        event = new_event("comment", user_id=self.user_id, post_id=self.post_id,
                          comment_id=comment_id, text=self.body.text,
                          post_author_id=found.author_id)
        return PreparedWrite(event, {"comment_id": comment_id, "event_id": event.event_id})


@dataclass(frozen=True, slots=True)
class DeleteComment:
    """Delete a comment on a live post: the comment's author or the post's author may."""

    user_id: str
    post_id: str
    comment_id: str
    reader: FeedReader
    id_key: bytes

    async def prepare(self) -> PreparedWrite:
        """A ``comment_deleted`` event; 404 unless the post is live, 403 for anyone else."""
        found = await live_post(self.reader, self.post_id)
        if found.author_id != self.user_id and not minted_comment_of(
                self.id_key, self.comment_id, self.user_id, self.post_id):
            raise ApiProblem(403, "not-the-author",
                             f"only the author of comment {self.comment_id} "
                             f"or of post {self.post_id} may delete it")
        event = new_event("comment_deleted", user_id=self.user_id, post_id=self.post_id,
                          comment_id=self.comment_id, post_author_id=found.author_id)
        return PreparedWrite(event, {"event_id": event.event_id})


@dataclass(frozen=True, slots=True)
class FollowChange:
    """Follow or unfollow a user (nothing to check in the stores)."""

    event_type: Literal["follow", "unfollow"]
    follower_id: str
    followee_id: str

    async def prepare(self) -> PreparedWrite:
        """The event."""
        event = new_event(self.event_type, follower_id=self.follower_id,
                          followee_id=self.followee_id)
        return PreparedWrite(event, {"event_id": event.event_id})
