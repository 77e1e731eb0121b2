"""The final content of the stores, derived per rules key: what a rebuild writes. Pure.

Streaming writes every effect as it comes; the stores keep, per row, cell and member, the
last value written. Each of those belongs to exactly one rules key (a timeline row and a
post to the author's fan-out key, a follow edge to the followee's, a counter hash to its
post or user), so replaying a key's effects in the order the rules emit them and keeping
the last write per cell gives exactly what streaming left in the stores. ``StoreImage``
does that on top of ``FeedState`` and adds what ``FeedState`` leaves out: the author of
each timeline row, the cells of ``posts`` rows (a retracted post keeps its caption in the
row), and counter cells that went back to zero (streaming wrote them).

Within a key, events are applied in ``(event_time_ms, event_id)`` order. The rules make
the derived state independent of that order; only those leftover cells (zeros written,
captions of deleted posts) depend on it, and they equal streaming's whenever events were
produced in event-time order per key.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from feedline.rules.counters import PostEngagementState, UserCounterState
from feedline.rules.dispatch import (
    FANOUT_TYPES,
    apply_fanout_event,
    apply_post_counter_event,
    apply_user_counter_event,
    counter_targets,
    fanout_key,
)
from feedline.rules.effects import (
    Effect,
    MediaRef,
    PostRetract,
    PostUpsert,
    TimelineAdd,
)
from feedline.rules.fanout import AuthorState, RulesConfig
from feedline.rules.memory import FeedState

#: Marks the ``deleted_at`` cell of a retracted post: streaming writes its wall clock there,
#: so the writer puts the rebuild's own clock in its place.
RETRACT_TIME = "now"


@dataclass
class PostRow:
    """The cells of one ``posts`` row as the last writes left them."""

    author_id: str
    caption: str | None = None
    media: tuple[MediaRef, ...] | None = None
    created_ms: int | None = None
    deleted: bool = False
    event_id: str | None = None


@dataclass
class StoreImage:
    """Derived state of some rules keys, complete down to the cells streaming writes."""

    config: RulesConfig
    feed: FeedState = field(init=False)
    timeline_authors: dict[tuple[str, str], str] = field(default_factory=dict)
    """(reader, post_id) -> author_id of the timeline row."""
    post_rows: dict[str, PostRow] = field(default_factory=dict)
    authors: set[str] = field(default_factory=set)
    """Fan-out keys applied (their outboxes, followers and celebrity flags are complete)."""
    readers: set[str] = field(default_factory=set)
    """Users seen as followers (their timelines may be affected)."""
    counter_users: set[str] = field(default_factory=set)
    counter_posts: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.feed = FeedState(outbox_cap=self.config.timeline_cap)

    def apply(self, effects: Iterable[Effect]) -> None:
        """Apply effects in order: to ``FeedState`` and to the extra cells."""
        for effect in effects:
            if isinstance(effect, TimelineAdd):
                self.timeline_authors[(effect.user_id, effect.post_id)] = effect.author_id
            elif isinstance(effect, PostUpsert):
                self.post_rows[effect.post_id] = PostRow(
                    effect.author_id, effect.caption, effect.media, effect.created_ms, False,
                    effect.event_id)
            elif isinstance(effect, PostRetract):
                row = self.post_rows.setdefault(effect.post_id, PostRow(effect.author_id))
                row.author_id, row.deleted = effect.author_id, True
            self.feed.apply([effect])

    # --- views the writer needs ----------------------------------------------------------

    def timeline_rows(self, user_id: str) -> list[tuple[int, str, str]]:
        """(created_ms, post_id, author_id) of a home timeline, newest first."""
        entries = self.feed.timelines.get(user_id, {})
        rows = [(ms, post, self.timeline_authors[(user_id, post)])
                for post, ms in entries.items()]
        rows.sort(reverse=True)
        return rows

    def cached_outbox(self, author_id: str) -> dict[str, int]:
        """The Redis outbox of an author (empty unless a celebrity with live posts)."""
        return dict(self.feed.outboxes.get(author_id, {}))


def ordered(events: Iterable[Any]) -> list[Any]:
    """Events without repeated ``event_id``s, in ``(event_time_ms, event_id)`` order."""
    unique = {e.event_id: e for e in events}
    return sorted(unique.values(), key=lambda e: (e.event_time_ms, e.event_id))


def fanout_groups(events: Iterable[Any]) -> dict[str, list[Any]]:
    """Upload and follow events grouped by the fan-out job's key (the author)."""
    groups: dict[str, list[Any]] = {}
    for event in events:
        if event.event_type in FANOUT_TYPES:
            groups.setdefault(fanout_key(event), []).append(event)
    return groups


def counter_groups(events: Iterable[Any]) -> dict[str, list[Any]]:
    """Events grouped by the counters job's keys (``post:ID`` / ``user:ID``)."""
    groups: dict[str, list[Any]] = {}
    for event in events:
        for kind, key in counter_targets(event):
            groups.setdefault(f"{kind}:{key}", []).append(event)
    return groups


def apply_authors(image: StoreImage, groups: dict[str, list[Any]]) -> int:
    """Run the fan-out rules per author over its events; returns how many events applied."""
    applied = 0
    for author_id in sorted(groups):
        state = AuthorState(author_id)
        image.authors.add(author_id)
        for event in ordered(groups[author_id]):
            if event.event_type in ("follow", "unfollow"):
                image.readers.add(event.follower_id)
            image.apply(apply_fanout_event(state, event, image.config))
            applied += 1
    return applied


def apply_counters(image: StoreImage, groups: dict[str, list[Any]]) -> int:
    """Run the counter rules per post and per user; returns how many events applied."""
    applied = 0
    for key in sorted(groups):
        kind, _, ident = key.partition(":")
        events = ordered(groups[key])
        if kind == "post":
            image.counter_posts.add(ident)
            post = PostEngagementState(ident)
            for event in events:
                image.apply(apply_post_counter_event(post, event))
        else:
            image.counter_users.add(ident)
            user = UserCounterState(ident)
            for event in events:
                image.apply(apply_user_counter_event(user, event))
        applied += len(events)
    return applied


def derive_image(events: Iterable[Any], config: RulesConfig, *, fanout: bool = True,
                 counters: bool = True) -> StoreImage:
    """The store image of a whole event set (tests and the one-user backfill use it)."""
    materialised = list(events)
    image = StoreImage(config)
    if fanout:
        apply_authors(image, fanout_groups(materialised))
    if counters:
        apply_counters(image, counter_groups(materialised))
    return image


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start:start + size]
