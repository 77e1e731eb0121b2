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

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from feedline.rules.effects import (
    Effect,
    MediaRef,
    PostRetract,
    PostUpsert,
    TimelineAdd,
)
from feedline.rules.fanout import RulesConfig
from feedline.rules.keys import Job, KeyKind, RuleKey, apply_event, new_state, rule_keys
from feedline.rules.memory import FeedState


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

    def keys_of(self, kind: KeyKind) -> set[str]:
        """The ids of the keys of one kind applied so far."""
        by_kind = {KeyKind.AUTHOR: self.authors, KeyKind.POST: self.counter_posts,
                   KeyKind.USER: self.counter_users}
        return by_kind[kind]

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


def key_groups(events: Iterable[Any], job: Job) -> dict[RuleKey, list[Any]]:
    """Events grouped by the keys of ``job`` they change (an event may have several)."""
    groups: dict[RuleKey, list[Any]] = {}
    for event in events:
        for key in rule_keys(event, job):
            groups.setdefault(key, []).append(event)
    return groups


def apply_groups(image: StoreImage, groups: Mapping[RuleKey, list[Any]]) -> int:
    """Run the rules per key over that key's events; returns how many events applied."""
    applied = 0
    for key in sorted(groups):
        image.keys_of(key.kind).add(key.ident)
        state = new_state(key)
        events = ordered(groups[key])
        for event in events:
            if key.kind is KeyKind.AUTHOR and event.event_type in ("follow", "unfollow"):
                image.readers.add(event.follower_id)
            image.apply(apply_event(state, event, image.config))
        applied += len(events)
    return applied


def derive_image(events: Iterable[Any], config: RulesConfig, *, fanout: bool = True,
                 counters: bool = True) -> StoreImage:
    """The store image of a whole event set (tests and the one-user backfill use it)."""
    materialised = list(events)
    image = StoreImage(config)
    for job, wanted in ((Job.FANOUT, fanout), (Job.COUNTERS, counters)):
        if wanted:
            apply_groups(image, key_groups(materialised, job))
    return image


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start:start + size]
