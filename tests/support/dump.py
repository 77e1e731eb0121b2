"""Full dumps of a keyspace's derived tables and a Redis prefix, for exact comparisons.

Every row with every column, every key with its type and whole value (sorted-set scores
included). Left out: the column ``posts.deleted_at`` (streaming stamps it with the write
time of the retraction, the rebuild with its wall clock, so no two runs agree on it) and
the streaming writer's versions hashes (``RedisKeys.versions``: write guards, not data).
"""

from __future__ import annotations

from typing import Any

import redis

from schemas.redis_keys import RedisKeys

TABLES = {
    "timelines": "user_id, created_at, post_id, author_id",
    "user_posts": "author_id, created_at, post_id",
    "posts": "post_id, author_id, caption, media, created_at, deleted, event_id",
    "followers": "followee_id, follower_id, followed_at",
    "following": "follower_id, followee_id, followed_at",
    "celebrities": "author_id, followers, since",
    "post_counters": "post_id, likes, comments",
    "user_counters": "user_id, followers, following, posts",
    "notification_groups": "recipient_id, latest_at, group_key, type, post_id, count, actors",
}


def _plain(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_plain(v) for v in value)
    if hasattr(value, "_fields"):
        return tuple(_plain(v) for v in value)
    return value


def dump_cql(session: Any, tables: tuple[str, ...] = tuple(TABLES)) -> dict[str, list[tuple]]:
    """Every row of the tables, sorted."""
    out = {}
    for table in tables:
        rows = session.execute(f"SELECT {TABLES[table]} FROM {table}", timeout=120)
        out[table] = sorted((tuple(_plain(v) for v in row) for row in rows), key=repr)
    return out


def dump_redis(client: redis.Redis, prefix: str) -> dict[str, tuple[str, Any]]:
    """Every key of the prefix: (type, value); left out are the versions hashes (write order
    bookkeeping) and push streams (a broker's messages, not derived state:
    ``schemas.redis_push``)."""
    out: dict[str, tuple[str, Any]] = {}
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        if RedisKeys(prefix).is_versions(key):
            continue
        kind = client.type(key)
        if kind == "stream":
            continue
        if kind == "zset":
            value: Any = tuple(client.zrange(key, 0, -1, withscores=True))
        elif kind == "hash":
            value = dict(sorted(client.hgetall(key).items()))
        elif kind == "set":
            value = tuple(sorted(client.smembers(key)))
        else:
            value = client.get(key)
        out[key] = (kind, value)
    return out


def differences(before: dict, after: dict, limit: int = 5) -> list[str]:
    """Readable differences between two dumps (empty when equal)."""
    out = []
    for name in sorted(set(before) | set(after)):
        a, b = before.get(name), after.get(name)
        if a == b:
            continue
        if isinstance(a, list) and isinstance(b, list):
            only_a = sorted(set(a) - set(b), key=repr)
            only_b = sorted(set(b) - set(a), key=repr)
            out.append(f"{name}: {len(only_a)} rows only before (e.g. {only_a[:2]}), "
                       f"{len(only_b)} only after (e.g. {only_b[:2]})")
        else:
            out.append(f"{name}: before {a!r} after {b!r}")
        if len(out) >= limit:
            break
    return out


def wipe(session: Any, client: redis.Redis, prefix: str, tables: tuple[str, ...]) -> None:
    """Truncate tables and delete every key of the prefix."""
    for table in tables:
        session.execute(f"TRUNCATE {table}", timeout=120)
    stale = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    for start in range(0, len(stale), 1000):
        client.delete(*stale[start:start + 1000])
