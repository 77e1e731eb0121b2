"""The publish side of realtime push: what a writer appends to the push streams.

The layout (keys, entries, window) is ``schemas.redis_push``. Writers call these inside
the Redis pipeline that applies the same change, after the CQL write, so an event is
published only for a change that is stored:

- the feed writer (``feedline.stores.feed_writer``): the events the streaming jobs
  judged per event (``feed_event_per_effect`` over all of an event's effects, carried to
  the writer of each effect's bucket), or ``queue_feed_events(pipe, keys, effects)`` with
  the effects of its batch when it has every effect of its events (tests, in process);
- the notifications writer: ``queue_notification_event(pipe, keys, recipient_id,
  group_key, group)`` per group it writes (``group`` None when the group is gone), or,
  from a Lua script that changes a group, ``XADD KEYS.push(recipient) MAXLEN ~
  PUSH_WINDOW * e notification d <notification_data JSON>`` (same hash tag as the
  recipient's notification keys).

Which effects are feed events is decided by ``feed_events`` (pure): a post *entering* a
feed is a new post (its ``PostUpsert`` is in the batch) or a followed author's post merged
in by the follow; a post *leaving* it is a deleted post, an unfollowed author's, or one the
follow-merge window let go. A post that only moves between a timeline and its author's
outbox (the author crossed the celebrity threshold) stays in every feed: no event.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from feedline.rules.effects import (
    EdgeDelete,
    EdgeUpsert,
    Effect,
    FollowedCelebrityAdd,
    OutboxAdd,
    OutboxRemove,
    PostRetract,
    PostUpsert,
    TimelineAdd,
    TimelineRemove,
)
from schemas.redis_keys import RedisKeys
from schemas.redis_notifications import GroupPayload
from schemas.redis_push import (
    DELETE,
    FEED,
    NOTIFICATION,
    PUSH_WINDOW,
    delete_data,
    entry,
    feed_data,
    notification_data,
)


@dataclass(frozen=True, slots=True)
class PushEvent:
    """One event for one stream: a user's (``author_id`` None) or a celebrity's."""

    event: str
    data: dict[str, Any]
    user_id: str | None = None
    author_id: str | None = None

    def key(self, keys: RedisKeys) -> str:
        """The stream it goes to."""
        if self.author_id is not None:
            return keys.author_push(self.author_id)
        assert self.user_id is not None
        return keys.push(self.user_id)


def feed_events(effects: Sequence[Effect]) -> list[PushEvent]:
    """The feed and delete events of a batch of effects, in effect order (pure)."""
    return [event for event in feed_event_per_effect(effects) if event is not None]


def feed_event_per_effect(effects: Sequence[Effect]) -> list[PushEvent | None]:
    """Each effect's feed or delete event (None for most), judged among ``effects``.

    Pass every effect of one event: whether a timeline add is news depends on the event's
    other effects (its post's upsert, the follow's edge), which the keyed writers receive
    in other buckets, perhaps in other instances.
    """
    new_posts = {e.post_id for e in effects if isinstance(e, PostUpsert)}
    retracted = {e.post_id for e in effects if isinstance(e, PostRetract)}
    follows = {(e.follower_id, e.followee_id) for e in effects if isinstance(e, EdgeUpsert)}
    unfollowers = {e.follower_id for e in effects if isinstance(e, EdgeDelete)}
    # Followers of an author who just became a celebrity: the author's posts leave their
    # timeline for the outbox, and stay in the feed.
    moved_to_outbox = {e.user_id for e in effects if isinstance(e, FollowedCelebrityAdd)}
    out: list[PushEvent | None] = []
    for e in effects:
        event = None
        match e:
            case TimelineAdd():
                if e.post_id in new_posts or (e.user_id, e.author_id) in follows:
                    event = PushEvent(FEED, feed_data(e.post_id, e.author_id, e.created_ms),
                                      user_id=e.user_id)
            case TimelineRemove():
                if (e.post_id in retracted or e.user_id in unfollowers
                        or e.user_id not in moved_to_outbox):
                    event = PushEvent(DELETE, delete_data(e.post_id), user_id=e.user_id)
            case OutboxAdd():
                if e.post_id in new_posts:
                    event = PushEvent(FEED, feed_data(e.post_id, e.author_id, e.created_ms),
                                      author_id=e.author_id)
            case OutboxRemove():
                if e.post_id in retracted:
                    event = PushEvent(DELETE, delete_data(e.post_id), author_id=e.author_id)
            case _:
                pass
        out.append(event)
    return out


def queue(pipe: Any, keys: RedisKeys, events: Iterable[PushEvent]) -> int:
    """Append ``events`` on ``pipe`` (``XADD … MAXLEN ~ PUSH_WINDOW``); how many commands."""
    count = 0
    for event in events:
        pipe.xadd(event.key(keys), entry(event.event, event.data), maxlen=PUSH_WINDOW,
                  approximate=True)
        count += 1
    return count


def queue_feed_events(pipe: Any, keys: RedisKeys, effects: Sequence[Effect]) -> int:
    """Queue the feed and delete events of ``effects`` on ``pipe``; how many commands."""
    return queue(pipe, keys, feed_events(effects))


def notification_event(recipient_id: str, group_key: str,
                       group: GroupPayload | None) -> PushEvent:
    """The ``notification`` event of a group as written now (None: the group is gone)."""
    if group is None:
        data = notification_data(group_key, group_key.split(":", 1)[0], None, 0, (), 0)
    else:
        data = notification_data(group_key, group.type, group.post_id, group.count,
                                 group.actors, group.latest_ms)
    return PushEvent(NOTIFICATION, data, user_id=recipient_id)


def queue_notification_event(pipe: Any, keys: RedisKeys, recipient_id: str, group_key: str,
                             group: GroupPayload | None) -> int:
    """Queue the ``notification`` event of one group on ``pipe`` (the notifications writer)."""
    return queue(pipe, keys, [notification_event(recipient_id, group_key, group)])
