"""An independent reference model of the feed rules, computed from the whole event set.

It shares no code with ``feedline.rules``: where the rules update keyed state event by
event, this model looks at all events at once and states the expected result directly
(ARCHITECTURE.md, "Rules the derived data must obey"). Tests compare the rules — and the
real stores after the streaming jobs — with it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class Expected:
    """What the derived data must be."""

    timelines: dict[str, dict[str, int]] = field(default_factory=dict)
    outboxes: dict[str, dict[str, int]] = field(default_factory=dict)
    celebrities: set[str] = field(default_factory=set)
    followed_celebrities: dict[str, set[str]] = field(default_factory=dict)
    edges: dict[tuple[str, str], int] = field(default_factory=dict)
    live_posts: dict[str, tuple[str, int]] = field(default_factory=dict)
    """post_id -> (author_id, created_ms)."""
    deleted_posts: set[str] = field(default_factory=set)
    post_counters: dict[str, tuple[int, int]] = field(default_factory=dict)
    user_counters: dict[str, dict[str, int]] = field(default_factory=dict)


class FeedKnobs(Protocol):
    """The three knobs of the feed rules (``FeedSettings`` has them)."""

    celebrity_threshold: int
    follow_merge_limit: int
    timeline_cap: int


def reference_for(events: Iterable[Any], feed: FeedKnobs) -> Expected:
    """`reference` with the knobs of a feed configuration."""
    return reference(events, celebrity_threshold=feed.celebrity_threshold,
                     follow_merge_limit=feed.follow_merge_limit, timeline_cap=feed.timeline_cap)


def _v(e: Any) -> tuple[int, str]:
    return (e.event_time_ms, e.event_id)


def reference(
    events: Iterable[Any], *, celebrity_threshold: int, follow_merge_limit: int, timeline_cap: int
) -> Expected:
    """Expected derived state for a set of events (order and duplicates do not matter)."""
    unique = {e.event_id: e for e in events}.values()
    by_type: dict[str, list[Any]] = defaultdict(list)
    for e in unique:
        by_type[e.event_type].append(e)

    # Posts: the earliest create of an id counts; a delete always wins.
    created: dict[str, Any] = {}
    for e in sorted(by_type["post_created"], key=_v):
        created.setdefault(e.post_id, e)
    deleted = {e.post_id for e in by_type["post_deleted"]}
    out = Expected()
    out.deleted_posts = set(deleted)
    for pid, e in created.items():
        if pid not in deleted:
            out.live_posts[pid] = (e.author_id, e.event_time_ms)

    # Follow edges: the newest event decides; a follow starts at the earliest follow
    # newer than the newest unfollow.
    history: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for e in by_type["follow"] + by_type["unfollow"]:
        history[(e.followee_id, e.follower_id)].append(e)
    for pair, evs in history.items():
        evs.sort(key=_v)
        if evs[-1].event_type != "follow":
            continue
        unfollows = [_v(e) for e in evs if e.event_type == "unfollow"]
        cutoff = unfollows[-1] if unfollows else (-1, "")
        out.edges[pair] = min(e.event_time_ms for e in evs if _v(e) > cutoff)

    followers: dict[str, dict[str, int]] = defaultdict(dict)
    for (followee, follower), since in out.edges.items():
        followers[followee][follower] = since
    out.celebrities = {a for a, f in followers.items() if len(f) > celebrity_threshold}

    # Every created post of an author, deleted ones included, oldest first.
    authored: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for pid, e in created.items():
        authored[e.author_id].append((e.event_time_ms, pid))
    for posts in authored.values():
        posts.sort()

    for author, fans in followers.items():
        posts = authored.get(author, [])
        if author in out.celebrities:
            live = [(t, p) for t, p in posts if p not in deleted]
            out.outboxes[author] = {p: t for t, p in live[-timeline_cap:]}
            for fan in fans:
                out.followed_celebrities.setdefault(fan, set()).add(author)
            continue
        for fan, since in fans.items():
            older = [(t, p) for t, p in posts if t < since]
            newer = [(t, p) for t, p in posts if t >= since]
            merged = older[-follow_merge_limit:] if follow_merge_limit else []
            for t, p in merged + newer:
                if p not in deleted:
                    out.timelines.setdefault(fan, {})[p] = t
    # Celebrities whose followers all left still keep no outbox.

    # Counters.
    likes: dict[tuple[str, str], Any] = {}
    for e in sorted(by_type["like"] + by_type["unlike"], key=_v):
        likes[(e.post_id, e.user_id)] = e
    comment_ids = {(e.post_id, e.comment_id) for e in by_type["comment"]}
    comment_ids -= {(e.post_id, e.comment_id) for e in by_type["comment_deleted"]}
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for (pid, _user), e in likes.items():
        if e.event_type == "like":
            counts[pid][0] += 1
    for pid, _cid in comment_ids:
        counts[pid][1] += 1
    out.post_counters = {p: (c[0], c[1]) for p, c in counts.items() if c != [0, 0]}

    users: dict[str, dict[str, int]] = defaultdict(dict)
    for followee, follower in out.edges:
        users[followee]["followers"] = users[followee].get("followers", 0) + 1
        users[follower]["following"] = users[follower].get("following", 0) + 1
    for author, _t in out.live_posts.values():
        users[author]["posts"] = users[author].get("posts", 0) + 1
    out.user_counters = dict(users)
    return out
