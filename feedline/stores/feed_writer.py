"""Apply rule effects to the CQL store and Redis, batched and idempotent.

One ``write`` call takes the effects of one event (or of many) and:

1. runs the CQL statements — all prepared, each with an explicit write time that grows
   in effect order — grouped into unlogged batches executed concurrently; the write
   times make last-writer-wins keep the effects' order whatever the grouping;
2. then updates Redis in one pipeline. Sorted sets (timelines, outboxes) are only
   added to when the key exists (a Lua script); a missing key means "not cached" (never
   built or evicted), and is rebuilt from the CQL store instead, so a partial timeline
   is never mistaken for a whole one. A full timeline that loses an entry is refilled
   from the CQL store, so Redis always holds exactly the newest ``timeline_cap``.

Counters are absolute values; every write is an upsert or a delete keyed by ids, so
applying the same effects twice changes nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import redis
from cassandra import OperationTimedOut, Unavailable, WriteTimeout
from cassandra.concurrent import execute_concurrent
from cassandra.query import BatchStatement, BatchType

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
from schemas.redis_keys import RedisKeys

_TRANSIENT = (WriteTimeout, OperationTimedOut, Unavailable)

# Adds members to a capped sorted set only if it exists; returns 0 when it does not.
_ZADD_IF_CACHED = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 2, #ARGV, 2 do redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[1]) + 1))
return 1
"""

# Every write carries an explicit write time (microseconds, strictly increasing per
# writer, in effect order), so grouping statements into batches or running them
# concurrently can never reorder two effects on the same row.
_WRITES = {
    "post_upsert": "INSERT INTO posts (post_id, author_id, caption, media, created_at, deleted, "
    "deleted_at, event_id) VALUES (?, ?, ?, ?, ?, false, null, ?) USING TIMESTAMP ?",
    "user_post_add": "INSERT INTO user_posts (author_id, created_at, post_id) VALUES (?, ?, ?) "
    "USING TIMESTAMP ?",
    "post_retract": "UPDATE posts USING TIMESTAMP ? SET author_id = ?, deleted = true, "
    "deleted_at = ? WHERE post_id = ?",
    "user_post_remove": "DELETE FROM user_posts USING TIMESTAMP ? WHERE author_id = ? "
    "AND created_at = ? AND post_id = ?",
    "timeline_add": "INSERT INTO timelines (user_id, created_at, post_id, author_id) "
    "VALUES (?, ?, ?, ?) USING TIMESTAMP ?",
    "timeline_remove": "DELETE FROM timelines USING TIMESTAMP ? WHERE user_id = ? "
    "AND created_at = ? AND post_id = ?",
    "follower_add": "INSERT INTO followers (followee_id, follower_id, followed_at) "
    "VALUES (?, ?, ?) USING TIMESTAMP ?",
    "following_add": "INSERT INTO following (follower_id, followee_id, followed_at) "
    "VALUES (?, ?, ?) USING TIMESTAMP ?",
    "follower_remove": "DELETE FROM followers USING TIMESTAMP ? WHERE followee_id = ? "
    "AND follower_id = ?",
    "following_remove": "DELETE FROM following USING TIMESTAMP ? WHERE follower_id = ? "
    "AND followee_id = ?",
    "celebrity_add": "INSERT INTO celebrities (author_id) VALUES (?) USING TIMESTAMP ?",
    "celebrity_remove": "DELETE FROM celebrities USING TIMESTAMP ? WHERE author_id = ?",
    "post_counters": "INSERT INTO post_counters (post_id, likes, comments) VALUES (?, ?, ?) "
    "USING TIMESTAMP ?",
    "user_followers": "UPDATE user_counters USING TIMESTAMP ? SET followers = ? WHERE user_id = ?",
    "user_following": "UPDATE user_counters USING TIMESTAMP ? SET following = ? WHERE user_id = ?",
    "user_posts": "UPDATE user_counters USING TIMESTAMP ? SET posts = ? WHERE user_id = ?",
}
_READS = {
    "timeline_page": "SELECT created_at, post_id FROM timelines WHERE user_id = ? LIMIT ?",
    "user_posts_page": "SELECT created_at, post_id FROM user_posts WHERE author_id = ? LIMIT ?",
}


def ms_to_dt(ms: int) -> datetime:
    """Epoch milliseconds as an aware UTC datetime (the CQL timestamp type)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def dt_to_ms(value: datetime) -> int:
    """A CQL timestamp (naive UTC from the driver, or aware) as epoch milliseconds."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return round(value.timestamp() * 1000)


def post_hash(effect: PostUpsert) -> dict[str, str]:
    """The Redis hash fields of a post (what feed hydration reads)."""
    media = [
        {"media_id": m.media_id, "content_type": m.content_type, "uri": m.uri}
        for m in effect.media
    ]
    return {
        "post_id": effect.post_id,
        "author_id": effect.author_id,
        "caption": effect.caption,
        "media": json.dumps(media, separators=(",", ":")),
        "created_ms": str(effect.created_ms),
    }


class FeedWriter:
    """Writes effects to one keyspace and one Redis key prefix."""

    def __init__(
        self,
        session: Any,
        client: redis.Redis,
        keys: RedisKeys,
        *,
        timeline_cap: int,
        concurrency: int = 16,
        retries: int = 6,
        batch_size: int = 50,
    ) -> None:
        self.session = session
        self.redis = client
        self.keys = keys
        self.cap = timeline_cap
        self.concurrency = concurrency
        self.retries = retries
        self.stmts = {name: session.prepare(cql) for name, cql in {**_WRITES, **_READS}.items()}
        # UPDATE/DELETE take the write time first, INSERT last.
        self.time_first = {name: not cql.startswith("INSERT") for name, cql in _WRITES.items()}
        self.batch_size = batch_size
        self._last_micros = 0
        self._zadd_if_cached = client.register_script(_ZADD_IF_CACHED)

    # --- CQL ----------------------------------------------------------------------------

    def _cql(self, effects: Sequence[Effect]) -> list[tuple[str, tuple[Any, ...]]]:
        """(statement name, bind values without the write time), in effect order."""
        out: list[tuple[str, tuple[Any, ...]]] = []
        for e in effects:
            match e:
                case TimelineAdd():
                    out.append(("timeline_add",
                                (e.user_id, ms_to_dt(e.created_ms), e.post_id, e.author_id)))
                case TimelineRemove():
                    out.append(("timeline_remove",
                                (e.user_id, ms_to_dt(e.created_ms), e.post_id)))
                case PostUpsert():
                    created = ms_to_dt(e.created_ms)
                    media = [(m.media_id, m.content_type, m.uri) for m in e.media]
                    out.append(("post_upsert",
                                (e.post_id, e.author_id, e.caption, media, created, e.event_id)))
                    out.append(("user_post_add", (e.author_id, created, e.post_id)))
                case PostRetract():
                    out.append(("post_retract",
                                (e.author_id, datetime.now(UTC), e.post_id)))
                    if e.created_ms is not None:
                        out.append(("user_post_remove",
                                    (e.author_id, ms_to_dt(e.created_ms), e.post_id)))
                case EdgeUpsert():
                    since = ms_to_dt(e.followed_ms)
                    out.append(("follower_add", (e.followee_id, e.follower_id, since)))
                    out.append(("following_add", (e.follower_id, e.followee_id, since)))
                case EdgeDelete():
                    out.append(("follower_remove", (e.followee_id, e.follower_id)))
                    out.append(("following_remove", (e.follower_id, e.followee_id)))
                case CelebritySet():
                    name = "celebrity_add" if e.celebrity else "celebrity_remove"
                    out.append((name, (e.author_id,)))
                case PostCountersSet():
                    out.append(("post_counters", (e.post_id, e.likes, e.comments)))
                case UserCounterSet():
                    out.append((f"user_{e.field}", (e.value, e.user_id)))
                case OutboxAdd() | OutboxRemove() | OutboxClear():
                    pass  # the CQL outbox is user_posts, written with the post itself
                case FollowedCelebrityAdd() | FollowedCelebrityRemove():
                    pass  # derivable in CQL from following + celebrities
                case _:
                    raise TypeError(f"unknown effect {e!r}")
        return out

    # --- Redis --------------------------------------------------------------------------

    def _redis(self, effects: Sequence[Effect]) -> None:
        k = self.keys
        pipe = self.redis.pipeline(transaction=False)
        # One tag per queued command, to read its reply: ("cached", kind, owner) for a
        # guarded ZADD, ("card", owner) for the size of a timeline before a removal.
        tags: list[tuple[str, ...]] = []

        def guarded_zadd(kind: str, owner: str, key: str, score: int, member: str) -> None:
            self._zadd_if_cached(keys=[key], args=[self.cap, score, member], client=pipe)
            tags.append(("cached", kind, owner))

        def plain(command: Any, *args: Any, **kwargs: Any) -> None:
            command(*args, **kwargs)
            tags.append(("plain",))

        for e in effects:
            match e:
                case TimelineAdd():
                    guarded_zadd("timeline", e.user_id, k.timeline(e.user_id), e.created_ms,
                                 e.post_id)
                case TimelineRemove():
                    pipe.zcard(k.timeline(e.user_id))
                    tags.append(("card", e.user_id))
                    plain(pipe.zrem, k.timeline(e.user_id), e.post_id)
                case PostUpsert():
                    plain(pipe.hset, k.post(e.post_id), mapping=post_hash(e))
                case PostRetract():
                    plain(pipe.delete, k.post(e.post_id))
                case OutboxAdd():
                    guarded_zadd("outbox", e.author_id, k.outbox(e.author_id), e.created_ms,
                                 e.post_id)
                case OutboxRemove():
                    plain(pipe.zrem, k.outbox(e.author_id), e.post_id)
                case OutboxClear():
                    plain(pipe.delete, k.outbox(e.author_id))
                case CelebritySet():
                    plain(pipe.sadd if e.celebrity else pipe.srem, k.celebrities(), e.author_id)
                case FollowedCelebrityAdd():
                    plain(pipe.sadd, k.followed_celebrities(e.user_id), e.author_id)
                case FollowedCelebrityRemove():
                    plain(pipe.srem, k.followed_celebrities(e.user_id), e.author_id)
                case PostCountersSet():
                    plain(pipe.hset, k.post_counters(e.post_id),
                          mapping={"likes": e.likes, "comments": e.comments})
                case UserCounterSet():
                    plain(pipe.hset, k.user_counters(e.user_id), e.field, e.value)
                case EdgeUpsert() | EdgeDelete():
                    pass  # the follow graph lives in the CQL store only
                case _:
                    raise TypeError(f"unknown effect {e!r}")
        if not tags:
            return
        reload: dict[str, tuple[str, str]] = {}
        for tag, reply in zip(tags, pipe.execute(), strict=True):
            if tag[0] == "cached" and reply == 0:  # not cached: rebuild it whole
                kind, owner = tag[1], tag[2]
                key = k.timeline(owner) if kind == "timeline" else k.outbox(owner)
                reload[key] = (kind, owner)
            elif tag[0] == "card" and reply >= self.cap:  # a full timeline shrank: refill
                reload[k.timeline(tag[1])] = ("timeline", tag[1])
        self._reload(reload)

    def _reload(self, targets: dict[str, tuple[str, str]]) -> None:
        """Rebuild sorted sets from the CQL store (the newest ``cap`` entries)."""
        if not targets:
            return
        stmt = {"timeline": self.stmts["timeline_page"], "outbox": self.stmts["user_posts_page"]}
        items = list(targets.items())
        pages = execute_concurrent(
            self.session,
            [(stmt[kind], (owner, self.cap)) for _key, (kind, owner) in items],
            concurrency=self.concurrency,
            raise_on_first_error=True,
        )
        pipe = self.redis.pipeline(transaction=True)
        for (key, (kind, owner)), (_ok, rows) in zip(items, pages, strict=True):
            if kind == "outbox" and not self.redis.sismember(self.keys.celebrities(), owner):
                continue
            entries = {row.post_id: dt_to_ms(row.created_at) for row in rows}
            pipe.delete(key)
            if entries:
                pipe.zadd(key, entries)
        pipe.execute()

    def _write_time(self) -> int:
        """A microsecond write time, strictly greater than the previous one."""
        self._last_micros = max(self._last_micros + 1, time.time_ns() // 1000)
        return self._last_micros

    def _batches(self, ops: list[tuple[str, tuple[Any, ...]]]) -> list[tuple[Any, None]]:
        """Stamp each write with its time and group them into unlogged batches.

        The batches spare the client one request and one response per statement (the
        driver's response handling dominated the writer's CPU); atomicity is not needed
        and not asked for, and the write times keep the effects' order.
        """
        out: list[tuple[Any, None]] = []
        for start in range(0, len(ops), self.batch_size):
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            for name, values in ops[start:start + self.batch_size]:
                stamp = self._write_time()
                bound = (stamp, *values) if self.time_first[name] else (*values, stamp)
                batch.add(self.stmts[name], bound)
            out.append((batch, None))
        return out

    # --- both ---------------------------------------------------------------------------

    def write(self, effects: Iterable[Effect]) -> int:
        """Apply effects: the CQL store first, then Redis. Returns how many were applied.

        A CQL timeout or unavailable error is retried with backoff (every write is
        idempotent, so re-sending the whole batch is safe); after ``retries`` the error
        propagates and the job restarts from its last checkpoint.
        """
        batch = list(effects)
        if not batch:
            return 0
        statements = self._batches(self._cql(batch))
        for attempt in range(self.retries + 1):
            try:
                if statements:
                    execute_concurrent(self.session, statements, concurrency=self.concurrency,
                                       raise_on_first_error=True)
                break
            except _TRANSIENT:
                if attempt == self.retries:
                    raise
                time.sleep(min(5.0, 0.2 * 2**attempt))
        self._redis(batch)
        return len(batch)
