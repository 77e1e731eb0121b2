"""Route parsed events to the rules: which key they belong to and what they change.

Both the streaming jobs and the batch rebuild go through these functions, so the same
event always means the same thing to both.
"""

from __future__ import annotations

from collections.abc import Iterator
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

FANOUT_TYPES = frozenset({"post_created", "post_deleted", "follow", "unfollow"})
ENGAGEMENT_TYPES = frozenset({"like", "unlike", "comment", "comment_deleted"})


def version_of(event: Any) -> Version:
    """The last-writer-wins version of an event."""
    return (int(event.event_time_ms), str(event.event_id))


def fanout_key(event: Any) -> str:
    """The author whose fan-out state an upload or follow event changes."""
    if event.event_type in ("post_created", "post_deleted"):
        return str(event.author_id)
    if event.event_type in ("follow", "unfollow"):
        return str(event.followee_id)
    raise ValueError(f"{event.event_type} does not concern fan-out")


def apply_fanout_event(state: AuthorState, event: Any, config: RulesConfig) -> list[Effect]:
    """Apply an upload or follow event to its author's state."""
    kind = event.event_type
    if kind == "post_created":
        media = tuple(MediaRef(m.media_id, m.content_type, m.uri) for m in event.media)
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


def counter_targets(event: Any) -> Iterator[tuple[str, str]]:
    """(``post`` | ``user``, key) of every counter state an event changes."""
    kind = event.event_type
    if kind in ENGAGEMENT_TYPES:
        yield "post", str(event.post_id)
    elif kind in ("follow", "unfollow"):
        yield "user", str(event.followee_id)
        yield "user", str(event.follower_id)
    elif kind in ("post_created", "post_deleted"):
        yield "user", str(event.author_id)
    else:
        raise ValueError(f"unknown event type {kind}")


def apply_post_counter_event(state: PostEngagementState, event: Any) -> list[Effect]:
    """Apply an engagement event to its post's counters."""
    return apply_engagement(
        state,
        event_type=event.event_type,
        user_id=event.user_id,
        version=version_of(event),
        comment_id=getattr(event, "comment_id", None),
    )


def apply_user_counter_event(state: UserCounterState, event: Any) -> list[Effect]:
    """Apply a follow or upload event to one of the users it concerns."""
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
