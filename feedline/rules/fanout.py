"""Fan-out rules, per author: who sees which of an author's posts. Pure, no I/O.

State is kept per author (the fan-out job keys ``uploads`` by author and ``follows`` by
followee, the same person). Every rule is order-independent, so any interleaving of the
two topics, a replay after a restart and the batch rebuild all reach the same state:

* a follow edge is a last-writer-wins register over ``(event_time, event_id)``; the
  follow "starts" at the earliest follow after the newest unfollow;
* a post delete wins over its create, whatever order they arrive in;
* an author is a celebrity while it has more followers than the threshold.

What a follower ``f`` (following since ``T``) has of a non-celebrity author in the home
timeline: every live post created at or after ``T`` (fan-out on write), plus those among
the author's ``follow_merge_limit`` newest posts created before ``T`` (the follow merge;
deleted posts take their place in that count). A celebrity's posts reach no timeline:
they sit in its outbox (the newest ``timeline_cap`` live posts) and followers merge that
outbox when they read. Crossing the threshold moves posts between the two, either way.

Each ``apply_*`` function mutates the state and returns the effects, in order.

Retention of unfollow tombstones and deleted posts: ``feedline.rules.retention``.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from feedline.rules.effects import (
    CelebritySet,
    EdgeDelete,
    EdgeUpsert,
    Effect,
    FollowedCelebrityAdd,
    FollowedCelebrityRemove,
    MediaRef,
    OutboxAdd,
    OutboxClear,
    OutboxRemove,
    PostRetract,
    PostUpsert,
    TimelineAdd,
    TimelineRemove,
)

if TYPE_CHECKING:
    from feedline.settings import FeedSettings

#: (event_time_ms, event_id): the total order deciding last-writer-wins.
Version = tuple[int, str]
#: (created_ms, post_id): the order of posts in timelines, newest last.
PostKey = tuple[int, str]


@dataclass(frozen=True)
class RulesConfig:
    """The knobs of the feed rules (from ``FeedSettings``)."""

    celebrity_threshold: int = 10_000
    follow_merge_limit: int = 200
    timeline_cap: int = 800

    @classmethod
    def from_settings(cls, feed: FeedSettings) -> RulesConfig:
        """The knobs every engine reads: streaming, the rebuild, backfill and verify."""
        return cls(
            celebrity_threshold=feed.celebrity_threshold,
            follow_merge_limit=feed.follow_merge_limit,
            timeline_cap=feed.timeline_cap,
        )


@dataclass
class Edge:
    """One follower's relation to the author, as a last-writer-wins register."""

    last_unfollow: Version | None = None
    follows: list[Version] = field(default_factory=list)
    """Follow versions newer than ``last_unfollow``, sorted; following iff non-empty."""

    @property
    def following(self) -> bool:
        """True while the newest event is a follow."""
        return bool(self.follows)

    @property
    def since_ms(self) -> int:
        """When the current follow started (only meaningful while following)."""
        return self.follows[0][0]

    def apply(self, version: Version, follow: bool) -> bool:
        """Apply one follow or unfollow; True when the register changed."""
        if self.last_unfollow is not None and version <= self.last_unfollow:
            return False
        if follow:
            if version in self.follows:
                return False
            insort(self.follows, version)
            return True
        self.last_unfollow = version
        self.follows = [v for v in self.follows if v > version]
        return True


@dataclass
class PostState:
    """What the author's state remembers of one post: its winning create, and a flag.

    Never its payload: the caption and media leave with the ``PostUpsert`` of the
    create that carries them and no rule reads them again, so a post costs the state its
    version and a flag, a deleted one no more (``feedline.rules.retention``). A state
    pickled when the class still had payload fields keeps them as unread attributes.
    """

    created: Version | None = None
    deleted: bool = False


@dataclass
class AuthorState:
    """Keyed state of the fan-out job for one author."""

    author_id: str
    posts: dict[str, PostState] = field(default_factory=dict)
    order: list[PostKey] = field(default_factory=list)
    """Every created post (deleted ones too) by (created_ms, post_id), oldest first."""
    edges: dict[str, Edge] = field(default_factory=dict)
    """Follower id -> edge. A plain dict everywhere but in the streaming job, which puts a
    view of its keyed map state here for the length of one event (one entry per follower:
    ``pipelines.streaming.fanout_state``); so the rules only look up, set and walk it."""
    celebrity: bool = False
    retired: list[PostKey] | None = field(default=None, repr=False, compare=False)
    """Deleted posts placed in ``order`` (in the order noted, sorted by each sweep): what
    ``feedline.rules.retention.prune_posts`` looks at instead of walking ``order``. A key
    may have left ``order`` since (a re-create moves a post); None until first needed (a
    state pickled before this field existed reads the class default)."""
    held: list[PostKey] | None = field(default=None, repr=False, compare=False)
    """The deleted posts the last walk of the followers found in a follower's window:
    ``prune_posts`` walks again only for a post not among them."""
    _followers: int | None = field(default=None, init=False, repr=False, compare=False)
    """``follower_count()`` kept up to date by ``apply_follow_change``; None until first
    asked (a state pickled before this field existed reads the class default)."""

    # --- derived views ------------------------------------------------------------------

    def follower_count(self) -> int:
        """Current followers (O(1) once counted)."""
        if self._followers is None:
            self._followers = sum(1 for _, e in self.edges.items() if e.following)
        return self._followers

    def followers(self) -> Iterator[tuple[str, int]]:
        """(follower_id, following-since ms) of current followers, sorted by id.

        One walk over ``edges.items()`` (never a lookup per follower): in the streaming
        job ``edges`` is a view of keyed map state, read entry by entry on lookup.
        """
        for follower_id, edge in sorted(self.edges.items(), key=_first):
            if edge.following:
                yield follower_id, edge.since_ms

    def retired_keys(self) -> list[PostKey]:
        """``retired``, found in ``order`` the first time (a state of before the field)."""
        if self.retired is None:
            self.retired = [k for k in self.order if self.posts[k[1]].deleted]
        return self.retired

    def retire(self, key: PostKey) -> None:
        """Note a deleted post placed at ``key`` in ``order`` (``retired``)."""
        retired = self.retired_keys()
        if not retired or retired[-1] != key:
            retired.append(key)

    def release_held(self, since_ms: int, config: RulesConfig) -> None:
        """Forget ``held`` if the window of a follower since ``since_ms`` had one of them.

        Called when that follower stops (or starts anew): the next ``prune_posts`` then
        walks the followers again.
        """
        if not self.held:
            return
        split = bisect_left(self.order, (since_ms, ""))
        if any(split - config.follow_merge_limit <= bisect_left(self.order, key) < split
               for key in self.held):
            self.held = None

    def live(self, post_id: str) -> bool:
        """Created and not deleted."""
        post = self.posts.get(post_id)
        return post is not None and post.created is not None and not post.deleted

    def delivered(self, since_ms: int, config: RulesConfig) -> list[PostKey]:
        """Live posts a non-celebrity author puts in a follower's timeline (follow at T)."""
        split = bisect_left(self.order, (since_ms, ""))
        window = self.order[max(0, split - config.follow_merge_limit) :]
        return [key for key in window if self.live(key[1])]

    def outbox(self, config: RulesConfig) -> list[PostKey]:
        """Newest ``timeline_cap`` live posts (the outbox while a celebrity)."""
        live = [key for key in self.order if self.live(key[1])]
        return live[-config.timeline_cap :]

    def is_delivered(self, key: PostKey, since_ms: int, config: RulesConfig) -> bool:
        """Whether post ``key`` is in the timeline of a follower following since T."""
        if key[0] >= since_ms:
            return True
        split = bisect_left(self.order, (since_ms, ""))
        index = bisect_left(self.order, key)
        return split - index <= config.follow_merge_limit


def _first(item: tuple[str, Edge]) -> str:
    return item[0]


def _adds(author_id: str, user_id: str, keys: Iterable[PostKey]) -> Iterator[Effect]:
    for created_ms, post_id in keys:
        yield TimelineAdd(user_id, post_id, created_ms, author_id)


def _removes(user_id: str, keys: Iterable[PostKey]) -> Iterator[Effect]:
    for created_ms, post_id in keys:
        yield TimelineRemove(user_id, post_id, created_ms)


def apply_post_created(
    state: AuthorState,
    *,
    post_id: str,
    version: Version,
    caption: str,
    media: tuple[MediaRef, ...],
    config: RulesConfig,
) -> list[Effect]:
    """A post was created. The earliest create of a post id wins."""
    post = state.posts.setdefault(post_id, PostState())
    if post.created is not None and post.created <= version:
        return []
    if post.created is not None:  # an earlier create of the same id: re-place the post
        return _recreate(state, post_id, version, caption, media, config)
    post.created = version
    key: PostKey = (version[0], post_id)
    insort(state.order, key)
    effects: list[Effect] = []
    if not post.deleted:
        effects.append(
            PostUpsert(post_id, state.author_id, version[0], caption, media, version[1])
        )
    else:
        state.retire(key)
    if state.celebrity:
        if not post.deleted:
            effects.append(OutboxAdd(state.author_id, post_id, version[0]))
        return effects
    index = bisect_left(state.order, key)
    for follower_id, since_ms in state.followers():
        if key[0] >= since_ms:
            if not post.deleted:
                effects.append(TimelineAdd(follower_id, post_id, key[0], state.author_id))
            continue
        split = bisect_left(state.order, (since_ms, ""))
        if split - index > config.follow_merge_limit:
            continue  # older than the follow-merge window: never delivered
        if not post.deleted:
            effects.append(TimelineAdd(follower_id, post_id, key[0], state.author_id))
        pushed = split - config.follow_merge_limit - 1
        if pushed >= 0 and state.live(state.order[pushed][1]):
            effects.extend(_removes(follower_id, [state.order[pushed]]))
    return effects


def _recreate(
    state: AuthorState,
    post_id: str,
    version: Version,
    caption: str,
    media: tuple[MediaRef, ...],
    config: RulesConfig,
) -> list[Effect]:
    """A create older than the one seen: move the post, re-deriving every timeline."""
    before = _snapshot(state, config)
    post = state.posts[post_id]
    assert post.created is not None
    state.order.remove((post.created[0], post_id))
    effects: list[Effect] = []
    if not post.deleted:
        effects.append(PostRetract(post_id, state.author_id, post.created[0]))
    post.created = version
    insort(state.order, (version[0], post_id))
    if not post.deleted:
        effects.append(
            PostUpsert(post_id, state.author_id, version[0], caption, media, version[1])
        )
    else:
        state.retire((version[0], post_id))
    effects.extend(_diff(state, before, _snapshot(state, config)))
    if state.celebrity:
        effects.append(OutboxClear(state.author_id))
        effects.extend(OutboxAdd(state.author_id, p, c) for c, p in state.outbox(config))
    return effects


def apply_post_deleted(
    state: AuthorState, *, post_id: str, config: RulesConfig
) -> list[Effect]:
    """A post was deleted: retract it everywhere (a later create cannot revive it)."""
    post = state.posts.setdefault(post_id, PostState())
    if post.deleted:
        return []
    post.deleted = True
    created_ms = post.created[0] if post.created else None
    effects: list[Effect] = [PostRetract(post_id, state.author_id, created_ms)]
    if created_ms is None:
        return effects
    key: PostKey = (created_ms, post_id)
    state.retire(key)
    if state.celebrity:
        # The outbox keeps the newest timeline_cap live posts: when it is full, the oldest
        # of the new window may be one that moves in (adding it again is harmless).
        effects.append(OutboxRemove(state.author_id, post_id))
        window = state.outbox(config)
        if len(window) == config.timeline_cap:
            effects.append(OutboxAdd(state.author_id, window[0][1], window[0][0]))
        return effects
    for follower_id, since_ms in state.followers():
        if state.is_delivered(key, since_ms, config):
            effects.append(TimelineRemove(follower_id, post_id, created_ms))
    return effects


def apply_follow_change(
    state: AuthorState,
    *,
    follower_id: str,
    version: Version,
    follow: bool,
    config: RulesConfig,
) -> list[Effect]:
    """A follow or unfollow of this author by ``follower_id``."""
    edge = state.edges.setdefault(follower_id, Edge())
    was_following = edge.following
    old_since = edge.since_ms if was_following else None
    old_keys = (
        state.delivered(old_since, config)
        if old_since is not None and not state.celebrity
        else []
    )
    count = state.follower_count()
    if not edge.apply(version, follow):
        return []
    state._followers = count + int(edge.following) - int(was_following)
    stopped = edge.since_ms != old_since if edge.following else was_following
    if old_since is not None and stopped:  # the follower's old window is no longer asked for
        state.release_held(old_since, config)
    effects: list[Effect] = []
    if edge.following and (not was_following or edge.since_ms != old_since):
        effects.append(EdgeUpsert(state.author_id, follower_id, edge.since_ms))
    elif was_following and not edge.following:
        effects.append(EdgeDelete(state.author_id, follower_id))

    celebrity_now = state.follower_count() > config.celebrity_threshold
    if celebrity_now != state.celebrity:
        return effects + _cross_threshold(state, follower_id, old_keys, celebrity_now, config)
    if state.celebrity:
        if edge.following and not was_following:
            effects.append(FollowedCelebrityAdd(follower_id, state.author_id))
        elif was_following and not edge.following:
            effects.append(FollowedCelebrityRemove(follower_id, state.author_id))
        return effects
    new_keys = state.delivered(edge.since_ms, config) if edge.following else []
    old_set, new_set = set(old_keys), set(new_keys)
    effects.extend(_removes(follower_id, [k for k in old_keys if k not in new_set]))
    effects.extend(_adds(state.author_id, follower_id, [k for k in new_keys if k not in old_set]))
    return effects


def _cross_threshold(
    state: AuthorState,
    changed_follower: str,
    changed_old_keys: list[PostKey],
    celebrity_now: bool,
    config: RulesConfig,
) -> list[Effect]:
    """Move every follower between fan-out and outbox reads."""
    effects: list[Effect] = [CelebritySet(state.author_id, celebrity_now)]
    followers = dict(state.followers())
    if celebrity_now:
        # Posts leave the timelines; followers read the outbox instead.
        if changed_follower not in followers and changed_old_keys:
            effects.extend(_removes(changed_follower, changed_old_keys))
        for follower_id, since_ms in followers.items():
            keys = (
                changed_old_keys
                if follower_id == changed_follower
                else state.delivered(since_ms, config)
            )
            effects.extend(_removes(follower_id, keys))
            effects.append(FollowedCelebrityAdd(follower_id, state.author_id))
        for created_ms, post_id in state.outbox(config):
            effects.append(OutboxAdd(state.author_id, post_id, created_ms))
    else:
        if changed_follower not in followers:
            effects.append(FollowedCelebrityRemove(changed_follower, state.author_id))
        for follower_id, since_ms in followers.items():
            effects.append(FollowedCelebrityRemove(follower_id, state.author_id))
            effects.extend(_adds(state.author_id, follower_id, state.delivered(since_ms, config)))
        effects.append(OutboxClear(state.author_id))
    state.celebrity = celebrity_now
    return effects


def _snapshot(state: AuthorState, config: RulesConfig) -> dict[str, list[PostKey]]:
    if state.celebrity:
        return {}
    return {f: state.delivered(since, config) for f, since in state.followers()}


def _diff(
    state: AuthorState, before: dict[str, list[PostKey]], after: dict[str, list[PostKey]]
) -> list[Effect]:
    effects: list[Effect] = []
    for follower_id in sorted(set(before) | set(after)):
        old, new = before.get(follower_id, []), after.get(follower_id, [])
        old_set, new_set = set(old), set(new)
        effects.extend(_removes(follower_id, [k for k in old if k not in new_set]))
        effects.extend(_adds(state.author_id, follower_id, [k for k in new if k not in old_set]))
    return effects
