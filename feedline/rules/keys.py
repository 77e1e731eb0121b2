"""Rule keys: which keyed state an event changes, how that state starts, how the event applies.

Every engine goes through this module, so the same event means the same thing to all of
them: the PyFlink jobs key their streams by a key's ``text``, the Beam rebuild shards the
archive's raw records by it, the in-process backfill and ``RulesEngine`` hold one state per
key. Adding an event type is one row of ``ROUTES`` plus its branch in the rules below; an
event type with no row raises ``UnknownEventType`` everywhere (the streaming jobs turn it
into a dead letter and keep going; the batch jobs stop on it).

| kind     | state (``new_state``)   | key text    | job        |
|----------|-------------------------|-------------|------------|
| author   | ``AuthorState``         | ``ID``      | fan-out    |
| post     | ``PostEngagementState`` | ``post:ID`` | counters   |
| user     | ``UserCounterState``    | ``user:ID`` | counters   |
| npost    | ``PostNotificationState`` | ``npost:ID`` | notifications |
| recipient | ``RecipientNotificationState`` | ``recipient:ID`` | notifications |

The notifications job's keys route through ``NOTIFICATION_ROUTES``, a table of its own:
``rule_keys(event)`` without a job, and every job but ``Job.NOTIFICATIONS``, see
``ROUTES`` only, so the fan-out and counters engines (streaming, rebuild, backfill,
``RulesEngine``) never meet a notification key until a job asks for them by name. A
``npost`` key's mention effects are candidates: they go on to the mentioned user's
``recipient`` key (``notification_recipients.apply_mention_candidate``), a second hop
``notification_book.NotificationEngine`` shows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from feedline.rules.counters import (
    PostEngagementState,
    UserCounterState,
    apply_engagement,
    apply_user_event,
)
from feedline.rules.effects import Effect, MediaRef
from feedline.rules.fanout import (
    AuthorState,
    RulesConfig,
    Version,
    apply_follow_change,
    apply_post_created,
    apply_post_deleted,
)
from feedline.rules.notification_recipients import (
    RecipientNotificationState,
    apply_recipient_event,
    recipient_state,
)
from feedline.rules.notifications import (
    PostNotificationState,
    apply_post_notification,
    post_state,
)


class KeyKind(StrEnum):
    """What the state of a rule key is about."""

    AUTHOR = "author"
    """An author's fan-out state (uploads keyed by author, follows by followee)."""
    POST = "post"
    """A post's like and comment counters."""
    USER = "user"
    """A user's followers, following and posts counters."""
    NOTIFIED_POST = "npost"
    """A post's like and comment groups and its mentions (the notifications job)."""
    RECIPIENT = "recipient"
    """A user's follow groups, keyed by the followee who is notified."""


class Job(StrEnum):
    """The streaming job holding a kind's states (and the rebuild job deriving them)."""

    FANOUT = "fanout"
    COUNTERS = "counters"
    NOTIFICATIONS = "notifications"


JOB_OF: dict[KeyKind, Job] = {
    KeyKind.AUTHOR: Job.FANOUT,
    KeyKind.POST: Job.COUNTERS,
    KeyKind.USER: Job.COUNTERS,
    KeyKind.NOTIFIED_POST: Job.NOTIFICATIONS,
    KeyKind.RECIPIENT: Job.NOTIFICATIONS,
}


@dataclass(frozen=True, slots=True, order=True)
class RuleKey:
    """One keyed rules state: its kind and the id of what it is about."""

    kind: KeyKind
    ident: str

    @classmethod
    def author(cls, author_id: str) -> RuleKey:
        """The fan-out key of an author."""
        return cls(KeyKind.AUTHOR, author_id)

    @classmethod
    def user(cls, user_id: str) -> RuleKey:
        """The counters key of a user."""
        return cls(KeyKind.USER, user_id)

    @property
    def job(self) -> Job:
        """The job holding this key's state."""
        return JOB_OF[self.kind]

    @property
    def text(self) -> str:
        """What the job keys by and the rebuild shards by: ``ID``, ``post:ID`` or ``user:ID``."""
        if self.kind is KeyKind.AUTHOR:
            return self.ident
        return f"{self.kind.value}:{self.ident}"

    def __str__(self) -> str:
        return self.text

    @classmethod
    def parse(cls, text: str, job: Job) -> RuleKey:
        """The key of ``job`` whose ``text`` this is."""
        if job == Job.FANOUT:
            return cls(KeyKind.AUTHOR, text)
        kind, sep, ident = text.partition(":")
        if job == Job.NOTIFICATIONS:
            if not sep or kind not in (KeyKind.NOTIFIED_POST, KeyKind.RECIPIENT):
                raise ValueError(f"{text!r} is not a notifications key (npost:ID or recipient:ID)")
            return cls(KeyKind(kind), ident)
        if not sep or kind not in (KeyKind.POST, KeyKind.USER):
            raise ValueError(f"{text!r} is not a counters key (post:ID or user:ID)")
        return cls(KeyKind(kind), ident)


_FOLLOW_ROUTES = (
    (KeyKind.AUTHOR, "followee_id"),
    (KeyKind.USER, "followee_id"),
    (KeyKind.USER, "follower_id"),
)
_UPLOAD_ROUTES = ((KeyKind.AUTHOR, "author_id"), (KeyKind.USER, "author_id"))
_ENGAGEMENT_ROUTES = ((KeyKind.POST, "post_id"),)

#: The keys each event type changes, as (kind, the event field holding the id), in the
#: order its effects come out: fan-out before counters, the followee before the follower.
ROUTES: dict[str, tuple[tuple[KeyKind, str], ...]] = {
    "post_created": _UPLOAD_ROUTES,
    "post_deleted": _UPLOAD_ROUTES,
    "follow": _FOLLOW_ROUTES,
    "unfollow": _FOLLOW_ROUTES,
    "like": _ENGAGEMENT_ROUTES,
    "unlike": _ENGAGEMENT_ROUTES,
    "comment": _ENGAGEMENT_ROUTES,
    "comment_deleted": _ENGAGEMENT_ROUTES,
}


class UnknownEventType(ValueError):
    """An event type no rule knows (it has no row in ``ROUTES``)."""

    def __init__(self, event_type: object) -> None:
        super().__init__(
            f"no rules for event type {event_type!r} (known: {', '.join(sorted(ROUTES))})"
        )
        self.event_type = event_type

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.event_type,))


def _routes(event_type: object, job: Job | None) -> list[tuple[KeyKind, str]]:
    table = NOTIFICATION_ROUTES if job == Job.NOTIFICATIONS else ROUTES
    routes = table.get(event_type) if isinstance(event_type, str) else None
    if routes is None:
        raise UnknownEventType(event_type)
    return [(kind, name) for kind, name in routes if job is None or JOB_OF[kind] == job]


def rule_keys(event: Any, job: Job | None = None) -> tuple[RuleKey, ...]:
    """The keys whose state a parsed event changes (only ``job``'s, when given)."""
    return tuple(
        RuleKey(kind, str(getattr(event, name))) for kind, name in _routes(event.event_type, job)
    )


def record_keys(record: Mapping[str, Any], job: Job | None = None) -> tuple[RuleKey, ...]:
    """The same keys for a raw record (a decoded JSON object, not validated yet)."""
    return tuple(
        RuleKey(kind, str(record.get(name)))
        for kind, name in _routes(record.get("event_type"), job)
    )


RuleState = (
    AuthorState
    | PostEngagementState
    | UserCounterState
    | PostNotificationState
    | RecipientNotificationState
)


def new_state(key: RuleKey) -> RuleState:
    """The state of a key before its first event."""
    if key.kind is KeyKind.AUTHOR:
        return AuthorState(key.ident)
    if key.kind is KeyKind.POST:
        return PostEngagementState(key.ident)
    if key.kind is KeyKind.NOTIFIED_POST:
        return post_state(key.ident)
    if key.kind is KeyKind.RECIPIENT:
        return recipient_state(key.ident)
    return UserCounterState(key.ident)


def apply_event(state: RuleState, event: Any, config: RulesConfig) -> list[Effect]:
    """Apply one event to one key's state (mutated in place); returns the effects, in order."""
    if isinstance(state, AuthorState):
        return _apply_fanout(state, event, config)
    if isinstance(state, PostEngagementState):
        return _apply_post_counters(state, event)
    if isinstance(state, PostNotificationState):
        return list(apply_post_notification(state, event))
    if isinstance(state, RecipientNotificationState):
        return list(apply_recipient_event(state, event))
    return _apply_user_counters(state, event)


def version_of(event: Any) -> Version:
    """The last-writer-wins version of an event."""
    return (int(event.event_time_ms), str(event.event_id))


def _apply_fanout(state: AuthorState, event: Any, config: RulesConfig) -> list[Effect]:
    kind = event.event_type
    if kind == "post_created":
        media = tuple(MediaRef.from_json(m.to_dict()) for m in event.media)
        return apply_post_created(
            state,
            post_id=event.post_id,
            version=version_of(event),
            caption=event.caption,
            media=media,
            config=config,
        )
    if kind == "post_deleted":
        return apply_post_deleted(state, post_id=event.post_id, config=config)
    if kind in ("follow", "unfollow"):
        return apply_follow_change(
            state,
            follower_id=event.follower_id,
            version=version_of(event),
            follow=kind == "follow",
            config=config,
        )
    raise ValueError(f"{kind} does not concern fan-out")


def _apply_post_counters(state: PostEngagementState, event: Any) -> list[Effect]:
    return apply_engagement(
        state,
        event_type=event.event_type,
        user_id=event.user_id,
        version=version_of(event),
        comment_id=getattr(event, "comment_id", None),
    )


def _apply_user_counters(state: UserCounterState, event: Any) -> list[Effect]:
    kind, user = event.event_type, state.user_id
    if kind in ("follow", "unfollow"):
        if user == event.followee_id:
            relation, other = "followed_by", event.follower_id
        elif user == event.follower_id:
            relation, other = "follows", event.followee_id
        else:
            raise ValueError(f"{kind} {event.event_id} does not concern user {user}")
        return apply_user_event(
            state, relation=relation, other_id=other, version=version_of(event),
            positive=kind == "follow",
        )
    if kind in ("post_created", "post_deleted"):
        return apply_user_event(
            state, relation="post", other_id=event.post_id, version=version_of(event),
            positive=kind == "post_created",
        )
    raise ValueError(f"{kind} does not concern user counters")


_NOTIFY_UPLOAD_ROUTES = ((KeyKind.NOTIFIED_POST, "post_id"), (KeyKind.RECIPIENT, "author_id"))
_NOTIFY_ENGAGEMENT_ROUTES = ((KeyKind.NOTIFIED_POST, "post_id"), (KeyKind.RECIPIENT, "user_id"))
_NOTIFY_FOLLOW_ROUTES = ((KeyKind.RECIPIENT, "followee_id"), (KeyKind.RECIPIENT, "follower_id"))

#: The notifications job's keys per event type (consulted only for ``Job.NOTIFICATIONS``):
#: a post's events by post (its author, the recipient, is named by ``post_created``),
#: follows by the followee (the recipient); and every event to the ``recipient`` key of
#: each user taking part, which from then on knows the user exists (mentions of unknown
#: users are held back there: ``feedline.rules.notifications``).
NOTIFICATION_ROUTES: dict[str, tuple[tuple[KeyKind, str], ...]] = {
    "post_created": _NOTIFY_UPLOAD_ROUTES,
    "post_deleted": _NOTIFY_UPLOAD_ROUTES,
    "like": _NOTIFY_ENGAGEMENT_ROUTES,
    "unlike": _NOTIFY_ENGAGEMENT_ROUTES,
    "comment": _NOTIFY_ENGAGEMENT_ROUTES,
    "comment_deleted": _NOTIFY_ENGAGEMENT_ROUTES,
    "follow": _NOTIFY_FOLLOW_ROUTES,
    "unfollow": _NOTIFY_FOLLOW_ROUTES,
}
