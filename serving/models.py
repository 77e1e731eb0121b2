"""Request and response bodies. Requests refuse unknown fields (``extra="forbid"``)."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from feedline.rules.effects import MediaRef
from feedline.stores.feed_items import PostView
from serving.auth import ID_PATTERN

#: Media types a post may show; must equal the post_created schema's enum (a unit test checks).
ContentType = Literal["image/jpeg", "image/png", "image/webp", "image/heic", "video/mp4",
                      "video/quicktime"]
Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
MAX_CAPTION = 2200
MAX_COMMENT = 2200


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MediaCreate(_Request):
    """Announce an upload."""

    content_type: ContentType = Field(description="MIME type of the file.")
    bytes: int = Field(ge=1, le=2**53, description="Exact size of the file in bytes.")


class MediaUpload(BaseModel):
    """Where to PUT the file: send exactly ``upload_headers`` with the request."""

    media_id: str
    upload_url: str
    method: Literal["PUT"] = "PUT"
    upload_headers: dict[str, str]
    expires_at: datetime


class RenditionOut(BaseModel):
    """A processed copy of a photo, metadata stripped."""

    url: str
    width: int
    height: int
    content_type: str


class MediaState(BaseModel):
    """What the media worker found in an upload (``processing`` until it is done)."""

    media_id: str
    status: Literal["processing", "ready", "rejected"]
    reason: str | None = Field(description="Why it was rejected: `code: what was found`.")
    content_type: str = Field(description="The announced type.")
    width: int | None
    height: int | None
    duration_ms: int | None
    renditions: list[RenditionOut] = Field(description="Largest first.")
    placeholder: str | None = Field(description="Dominant colour, `#rrggbb`, to show "
                                                "while the photo loads.")


class PostCreate(_Request):
    """Publish a post of uploaded media."""

    caption: str = Field(default="", max_length=MAX_CAPTION, description="May be empty.")
    media_ids: list[Id] = Field(min_length=1, max_length=10,
                                description="Media from POST /v1/media, uploaded, in order.")


class CommentCreate(_Request):
    """Comment on a post."""

    text: str = Field(min_length=1, max_length=MAX_COMMENT)


class Accepted(BaseModel):
    """The event carrying the change was accepted by the event log."""

    event_id: str


class PostAccepted(Accepted):
    """A post was accepted; it appears in feeds once the streaming jobs processed it."""

    post_id: str


class CommentAccepted(Accepted):
    """A comment was accepted."""

    comment_id: str


class MediaOut(BaseModel):
    """One photo or video of a post, with what the media worker found in it."""

    media_id: str
    content_type: str = Field(description="The type of the file at `url`.")
    url: str = Field(description="The largest rendition (metadata stripped).")
    width: int | None = Field(description="Width of the original in pixels; null when not "
                                          "known (posts published before media metadata).")
    height: int | None = Field(description="Height of the original in pixels; null when not "
                                           "known.")
    duration_ms: int | None = Field(description="Length of a video; null for a photo.")
    renditions: list[RenditionOut] = Field(description="Every processed copy, largest first; "
                                                       "empty when not known.")
    placeholder: str | None = Field(description="Dominant colour, `#rrggbb`, to show while "
                                                "the media loads; null when not known.")


class PostOut(BaseModel):
    """A post with its counters."""

    post_id: str
    author_id: str
    caption: str
    media: list[MediaOut]
    created_at: str = Field(description="RFC 3339, UTC, milliseconds.")
    likes: int
    comments: int


class PostPage(BaseModel):
    """A page of posts, newest first; pass ``next_cursor`` back for the next page."""

    items: list[PostOut]
    next_cursor: str | None


class UserOut(BaseModel):
    """A user's counters."""

    user_id: str
    followers: int
    following: int
    posts: int


def rfc3339_ms(ms: int) -> str:
    """Epoch milliseconds as RFC 3339 UTC with milliseconds, e.g. ``2026-11-21T01:02:03.004Z``."""
    t = time.gmtime(ms // 1000)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (  # noqa: UP031 (fastest on the hot path)
        t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, ms % 1000)


def media_json(media: MediaRef, media_url: Any) -> dict[str, Any]:
    """A ``MediaOut`` as plain JSON data: storage URIs as the URLs clients fetch."""
    return {
        "media_id": media.media_id,
        "content_type": media.content_type,
        "url": media_url(media.uri),
        "width": media.width,
        "height": media.height,
        "duration_ms": media.duration_ms,
        "renditions": [{"url": media_url(r.uri), "width": r.width, "height": r.height,
                        "content_type": r.content_type} for r in media.renditions],
        "placeholder": media.placeholder,
    }


def post_json(view: PostView, media_url: Any) -> dict[str, Any]:
    """A ``PostOut`` as plain JSON data (built directly: this is the hot path)."""
    return {
        "post_id": view.post_id,
        "author_id": view.author_id,
        "caption": view.caption,
        "media": [media_json(m, media_url) for m in view.media],
        "created_at": rfc3339_ms(view.created_ms),
        "likes": view.likes,
        "comments": view.comments,
    }


class NotificationOut(BaseModel):
    """One notification group: who did what, how many, and whether it is new to the caller."""

    group_key: str = Field(description="`like:POST`, `comment:POST`, `follow:YYYY-MM-DD` or "
                                       "`mention:POST[:COMMENT]`; stable while the group lives.")
    type: Literal["like", "comment", "follow", "mention"]
    post_id: str | None = Field(description="The post it is about; null for follows.")
    count: int = Field(description="How many people (a like, comment or follow each).")
    actors: list[str] = Field(description="The newest few of them, newest first.")
    latest_at: str = Field(description="RFC 3339, UTC, milliseconds: the newest action.")
    unread: bool = Field(description="Newer than the caller's last mark-read.")


class NotificationPage(BaseModel):
    """A page of notification groups, newest first; pass ``next_cursor`` back for the next."""

    items: list[NotificationOut]
    next_cursor: str | None


class UnreadCount(BaseModel):
    """Unread notification groups (among the newest 500 the caller sees)."""

    count: int


class MarkRead(_Request):
    """Mark every notification up to now read (no fields)."""


class ReadMarker(BaseModel):
    """Groups whose newest action is at or before ``read_through`` are read."""

    read_through: str = Field(description="RFC 3339, UTC, milliseconds.")
