"""The writes the feed rules ask for: small immutable records, applied by sinks.

Every effect is idempotent on its own (an upsert keyed by ids, a removal, or an absolute
value), so a sink may apply a batch twice after a retry without changing the result.
Effects about one key come out of the rules in the order they must be applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True, slots=True)
class Rendition:
    """A processed copy of a post's photo (metadata stripped) in object storage."""

    uri: str
    width: int
    height: int
    content_type: str


@dataclass(frozen=True, slots=True)
class MediaRef:
    """A media object a post shows, with what the media worker found in it.

    The metadata came with the ``post_created`` event (schema version 2); an entry of a
    version 1 event has none (``None`` and no renditions).
    """

    media_id: str
    content_type: str
    uri: str
    width: int | None = None
    height: int | None = None
    duration_ms: int | None = None
    """Length of a video; None for a photo."""
    renditions: tuple[Rendition, ...] = ()
    """Largest first."""
    placeholder: str | None = None
    """What to show while the media loads (the dominant colour, ``#rrggbb``)."""

    def __setstate__(self, state: list[Any]) -> None:
        """Unpickle, also from keyed state written before the metadata fields existed."""
        for index, field in enumerate(fields(self)):
            value = state[index] if index < len(state) else field.default
            object.__setattr__(self, field.name, value)

    def to_json(self) -> dict[str, Any]:
        """JSON data: the three base fields, then each metadata field that is known."""
        plain: dict[str, Any] = {"media_id": self.media_id, "content_type": self.content_type,
                                 "uri": self.uri}
        for name in ("width", "height", "duration_ms"):
            value = getattr(self, name)
            if value is not None:
                plain[name] = value
        if self.renditions:
            plain["renditions"] = [
                {"uri": r.uri, "width": r.width, "height": r.height,
                 "content_type": r.content_type} for r in self.renditions]
        if self.placeholder is not None:
            plain["placeholder"] = self.placeholder
        return plain

    @classmethod
    def from_json(cls, plain: Mapping[str, Any]) -> MediaRef:
        """The inverse of ``to_json``; also reads an event's media item (``to_dict()``)."""
        renditions = tuple(Rendition(r["uri"], r["width"], r["height"], r["content_type"])
                           for r in plain.get("renditions") or ())
        return cls(plain["media_id"], plain["content_type"], plain["uri"], plain.get("width"),
                   plain.get("height"), plain.get("duration_ms"), renditions,
                   plain.get("placeholder"))


@dataclass(frozen=True, slots=True)
class PostUpsert:
    """A live post: payload row, the author's profile list, the hydration hash."""

    post_id: str
    author_id: str
    created_ms: int
    caption: str
    media: tuple[MediaRef, ...]
    event_id: str


@dataclass(frozen=True, slots=True)
class PostRetract:
    """A deleted post: tombstone the row, drop it from the profile and the cache."""

    post_id: str
    author_id: str
    created_ms: int | None


@dataclass(frozen=True, slots=True)
class TimelineAdd:
    """Deliver a post into a reader's home timeline."""

    user_id: str
    post_id: str
    created_ms: int
    author_id: str


@dataclass(frozen=True, slots=True)
class TimelineRemove:
    """Take a post out of a reader's home timeline."""

    user_id: str
    post_id: str
    created_ms: int


@dataclass(frozen=True, slots=True)
class OutboxAdd:
    """A celebrity's post, merged into followers' feeds at read time."""

    author_id: str
    post_id: str
    created_ms: int


@dataclass(frozen=True, slots=True)
class OutboxRemove:
    """Take a post out of a celebrity's outbox."""

    author_id: str
    post_id: str


@dataclass(frozen=True, slots=True)
class OutboxClear:
    """The author is no longer a celebrity: the outbox goes away."""

    author_id: str


@dataclass(frozen=True, slots=True)
class CelebritySet:
    """The author crossed the celebrity threshold (either way)."""

    author_id: str
    celebrity: bool


@dataclass(frozen=True, slots=True)
class FollowedCelebrityAdd:
    """``user_id`` follows celebrity ``author_id``: merge that outbox on read."""

    user_id: str
    author_id: str


@dataclass(frozen=True, slots=True)
class FollowedCelebrityRemove:
    """``user_id`` no longer reads celebrity ``author_id``'s outbox."""

    user_id: str
    author_id: str


@dataclass(frozen=True, slots=True)
class EdgeUpsert:
    """``follower_id`` follows ``followee_id`` (followers and following tables)."""

    followee_id: str
    follower_id: str
    followed_ms: int


@dataclass(frozen=True, slots=True)
class EdgeDelete:
    """``follower_id`` no longer follows ``followee_id``."""

    followee_id: str
    follower_id: str


@dataclass(frozen=True, slots=True)
class PostCountersSet:
    """Absolute like and comment counts of a post."""

    post_id: str
    likes: int
    comments: int


@dataclass(frozen=True, slots=True)
class UserCounterSet:
    """Absolute value of one user counter: ``followers``, ``following`` or ``posts``."""

    user_id: str
    field: str
    value: int


@dataclass(frozen=True, slots=True)
class NotificationUpsert:
    """A recipient's notification group as it is now (``feedline.rules.notifications``).

    The row sits in the recipient's list at ``latest_ms``; ``previous_latest_ms`` is where
    it sat before (None for a new group), so a writer moves it. ``event_time_ms`` and
    ``event_id`` name the event that caused the change; ``revision`` grows with every
    effect of the owning rule key, so it orders the writes of one group (a late event may
    carry an older time than the group's previous write).
    """

    recipient_id: str
    group_key: str
    type: str
    """``like``, ``comment``, ``follow`` or ``mention``."""
    post_id: str | None
    count: int
    actors: tuple[str, ...]
    """The newest few actors still present, newest first."""
    latest_ms: int
    previous_latest_ms: int | None
    event_time_ms: int
    event_id: str
    revision: int


@dataclass(frozen=True, slots=True)
class NotificationDelete:
    """A recipient's notification group is gone (its row sat at ``latest_ms``)."""

    recipient_id: str
    group_key: str
    latest_ms: int
    event_time_ms: int
    event_id: str
    revision: int


TimelineEffect = TimelineAdd | TimelineRemove
Effect = (
    PostUpsert
    | PostRetract
    | TimelineAdd
    | TimelineRemove
    | OutboxAdd
    | OutboxRemove
    | OutboxClear
    | CelebritySet
    | FollowedCelebrityAdd
    | FollowedCelebrityRemove
    | EdgeUpsert
    | EdgeDelete
    | PostCountersSet
    | UserCounterSet
    | NotificationUpsert
    | NotificationDelete
)
NotificationEffect = NotificationUpsert | NotificationDelete
