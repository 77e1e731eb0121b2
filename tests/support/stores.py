"""Read the derived state back out of the real stores, shaped like the reference model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis

from feedline.stores.feed_writer import dt_to_ms
from schemas.redis_keys import COMPLETE_MEMBER, RedisKeys


@dataclass
class StoredState:
    """What the CQL store and Redis hold."""

    cql_timelines: dict[str, dict[str, int]] = field(default_factory=dict)
    cql_edges: dict[tuple[str, str], int] = field(default_factory=dict)
    cql_following: set[tuple[str, str]] = field(default_factory=set)
    cql_live_posts: dict[str, tuple[str, int]] = field(default_factory=dict)
    cql_deleted_posts: set[str] = field(default_factory=set)
    cql_user_posts: dict[str, set[str]] = field(default_factory=dict)
    cql_celebrities: set[str] = field(default_factory=set)
    cql_post_counters: dict[str, tuple[int, int]] = field(default_factory=dict)
    cql_user_counters: dict[str, dict[str, int]] = field(default_factory=dict)
    redis_timelines: dict[str, list[str]] = field(default_factory=dict)
    redis_outboxes: dict[str, list[str]] = field(default_factory=dict)
    redis_followed_celebrities: dict[str, set[str]] = field(default_factory=dict)
    redis_celebrities: set[str] = field(default_factory=set)
    redis_posts: set[str] = field(default_factory=set)
    redis_post_counters: dict[str, tuple[int, int]] = field(default_factory=dict)
    redis_user_counters: dict[str, dict[str, int]] = field(default_factory=dict)


def read_cql(session: Any, out: StoredState) -> None:
    """Full scans of the test keyspace (small by construction)."""
    for r in session.execute("SELECT user_id, post_id, created_at FROM timelines"):
        out.cql_timelines.setdefault(r.user_id, {})[r.post_id] = dt_to_ms(r.created_at)
    for r in session.execute("SELECT followee_id, follower_id, followed_at FROM followers"):
        out.cql_edges[(r.followee_id, r.follower_id)] = dt_to_ms(r.followed_at)
    for r in session.execute("SELECT follower_id, followee_id FROM following"):
        out.cql_following.add((r.followee_id, r.follower_id))
    for r in session.execute("SELECT post_id, author_id, created_at, deleted FROM posts"):
        if r.deleted:
            out.cql_deleted_posts.add(r.post_id)
        else:
            out.cql_live_posts[r.post_id] = (r.author_id, dt_to_ms(r.created_at))
    for r in session.execute("SELECT author_id, post_id FROM user_posts"):
        out.cql_user_posts.setdefault(r.author_id, set()).add(r.post_id)
    celebrities = session.execute("SELECT author_id FROM celebrities")
    out.cql_celebrities = {r.author_id for r in celebrities}
    for r in session.execute("SELECT post_id, likes, comments FROM post_counters"):
        if (r.likes or 0, r.comments or 0) != (0, 0):
            out.cql_post_counters[r.post_id] = (r.likes or 0, r.comments or 0)
    for r in session.execute("SELECT user_id, followers, following, posts FROM user_counters"):
        values = {"followers": r.followers, "following": r.following, "posts": r.posts}
        kept = {k: v for k, v in values.items() if v}
        if kept:
            out.cql_user_counters[r.user_id] = kept


def _ids(key: str) -> str:
    return key.rsplit(":", 1)[1]


def read_redis(client: redis.Redis, keys: RedisKeys, out: StoredState) -> None:
    """Every key of the prefix."""
    prefix = keys.prefix
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        kind = key.split(":")[1] if key.count(":") >= 1 else ""
        if key == keys.celebrities():
            out.redis_celebrities = set(client.smembers(key))
        elif kind == "tl":
            out.redis_timelines[_ids(key)] = client.zrevrange(key, 0, -1)
        elif kind == "ob":
            out.redis_outboxes[_ids(key)] = client.zrevrange(key, 0, -1)
        elif kind == "fc":
            members = set(client.smembers(key)) - {COMPLETE_MEMBER}  # readers' marker
            if members:
                out.redis_followed_celebrities[_ids(key)] = members
        elif kind == "post":
            out.redis_posts.add(_ids(key))
        elif kind == "pc":
            h = client.hgetall(key)
            counts = (int(h.get("likes", 0)), int(h.get("comments", 0)))
            if counts != (0, 0):
                out.redis_post_counters[_ids(key)] = counts
        elif kind == "uc":
            kept = {k: int(v) for k, v in client.hgetall(key).items() if int(v)}
            if kept:
                out.redis_user_counters[_ids(key)] = kept


def read_state(session: Any, client: redis.Redis, keys: RedisKeys) -> StoredState:
    """Both stores."""
    out = StoredState()
    read_cql(session, out)
    read_redis(client, keys, out)
    return out
