"""Effects applied to plain dictionaries: the derived state, held in memory.

What the CQL store and Redis hold after the sinks applied the same effects, in a form
that tests, dry runs and verification can compare. Timelines here are complete; Redis
keeps the newest ``timeline_cap`` of each (see ``redis_timeline``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from feedline.rules.effects import (
    CelebritySet,
    EdgeDelete,
    EdgeUpsert,
    Effect,
    FollowedCelebrityAdd,
    FollowedCelebrityRemove,
    OutboxAdd,
    OutboxClear,
    OutboxRemove,
    PostCountersSet,
    PostRetract,
    PostUpsert,
    TimelineAdd,
    TimelineRemove,
    UserCounterSet,
)


@dataclass
class FeedState:
    """Derived feed state keyed like the stores."""

    timelines: dict[str, dict[str, int]] = field(default_factory=dict)
    """user -> {post_id: created_ms}."""
    outboxes: dict[str, dict[str, int]] = field(default_factory=dict)
    celebrities: set[str] = field(default_factory=set)
    followed_celebrities: dict[str, set[str]] = field(default_factory=dict)
    edges: dict[tuple[str, str], int] = field(default_factory=dict)
    """(followee, follower) -> following since ms."""
    posts: dict[str, PostUpsert] = field(default_factory=dict)
    deleted_posts: set[str] = field(default_factory=set)
    post_counters: dict[str, tuple[int, int]] = field(default_factory=dict)
    user_counters: dict[str, dict[str, int]] = field(default_factory=dict)
    outbox_cap: int | None = None
    """Keep outboxes to their newest entries, as Redis does (None: keep all)."""

    def apply(self, effects: Iterable[Effect]) -> None:
        """Apply effects in order."""
        for effect in effects:
            self._apply(effect)

    def _apply(self, e: Effect) -> None:
        match e:
            case TimelineAdd():
                self.timelines.setdefault(e.user_id, {})[e.post_id] = e.created_ms
            case TimelineRemove():
                self.timelines.get(e.user_id, {}).pop(e.post_id, None)
            case PostUpsert():
                self.posts[e.post_id] = e
                self.deleted_posts.discard(e.post_id)
            case PostRetract():
                self.posts.pop(e.post_id, None)
                self.deleted_posts.add(e.post_id)
            case OutboxAdd():
                outbox = self.outboxes.setdefault(e.author_id, {})
                outbox[e.post_id] = e.created_ms
                if self.outbox_cap is not None and len(outbox) > self.outbox_cap:
                    keep = set(newest(outbox, self.outbox_cap))
                    for post_id in [p for p in outbox if p not in keep]:
                        del outbox[post_id]
            case OutboxRemove():
                self.outboxes.get(e.author_id, {}).pop(e.post_id, None)
            case OutboxClear():
                self.outboxes.pop(e.author_id, None)
            case CelebritySet():
                (self.celebrities.add if e.celebrity else self.celebrities.discard)(e.author_id)
            case FollowedCelebrityAdd():
                self.followed_celebrities.setdefault(e.user_id, set()).add(e.author_id)
            case FollowedCelebrityRemove():
                self.followed_celebrities.get(e.user_id, set()).discard(e.author_id)
            case EdgeUpsert():
                self.edges[(e.followee_id, e.follower_id)] = e.followed_ms
            case EdgeDelete():
                self.edges.pop((e.followee_id, e.follower_id), None)
            case PostCountersSet():
                self.post_counters[e.post_id] = (e.likes, e.comments)
            case UserCounterSet():
                self.user_counters.setdefault(e.user_id, {})[e.field] = e.value
            case _:
                raise TypeError(f"unknown effect {e!r}")

    def normalized(self) -> FeedState:
        """The same state without empty containers or zero counters (for comparisons)."""
        return FeedState(
            timelines={u: dict(t) for u, t in self.timelines.items() if t},
            outboxes={a: dict(o) for a, o in self.outboxes.items() if o},
            celebrities=set(self.celebrities),
            followed_celebrities={u: set(c) for u, c in self.followed_celebrities.items() if c},
            edges=dict(self.edges),
            posts=dict(self.posts),
            deleted_posts=set(self.deleted_posts),
            post_counters={p: c for p, c in self.post_counters.items() if c != (0, 0)},
            user_counters={
                u: {k: v for k, v in c.items() if v}
                for u, c in self.user_counters.items()
                if any(c.values())
            },
            outbox_cap=self.outbox_cap,
        )


def newest(entries: dict[str, int], cap: int) -> list[str]:
    """Post ids newest first by (created_ms, post_id), at most ``cap``."""
    ranked = sorted(entries.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)
    return [post_id for post_id, _ in ranked[:cap]]


def redis_timeline(state: FeedState, user_id: str, cap: int) -> list[str]:
    """What Redis holds for a timeline: the newest ``cap`` entries."""
    return newest(state.timelines.get(user_id, {}), cap)
