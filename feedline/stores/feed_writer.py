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
from feedline.stores.lua import source
from feedline.stores.push import queue_feed_events
from schemas.cql_statements import (
    USER_COUNTER_WRITES,
    bind_write,
    dt_to_ms,
    ms_to_dt,
    prepare,
)
from schemas.redis_hashes import encode_post, encode_post_counters, encode_user_counters
from schemas.redis_keys import RedisKeys
from schemas.redis_sets import OUTBOX, SET_RULES, TIMELINE, Completeness, SetRule

_TRANSIENT = (WriteTimeout, OperationTimedOut, Unavailable)

#: The statements (``schemas.cql_statements``) the writer prepares.
_WRITES = (
    "post_upsert", "user_post_add", "post_retract", "user_post_remove", "timeline_add",
    "timeline_remove", "follower_add", "following_add", "follower_remove", "following_remove",
    "celebrity_add", "celebrity_remove", "post_counters_set", *USER_COUNTER_WRITES.values(),
)
_READS = tuple(str(r.listing) for r in SET_RULES.values() if r.listing)


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
        # Every write carries an explicit write time (microseconds, strictly increasing per
        # writer, in effect order), so grouping statements into batches or running them
        # concurrently can never reorder two effects on the same row.
        self.stmts = prepare(session, (*_WRITES, *_READS))
        self.batch_size = batch_size
        self._last_micros = 0
        self._zadd_if_cached = client.register_script(source("zadd_if_cached.lua"))

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
                    out.append(("post_counters_set", (e.post_id, e.likes, e.comments)))
                case UserCounterSet():
                    out.append((USER_COUNTER_WRITES[e.field], (e.value, e.user_id)))
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
        # guarded ZADD, ("card", owner) for the size of a capped timeline before a removal
        # (the completeness rules: ``schemas.redis_sets``).
        tags: list[tuple[str, ...]] = []

        def guarded_zadd(rule: SetRule, owner: str, score: int, member: str) -> None:
            self._zadd_if_cached(keys=[rule.key(k, owner)], args=[self.cap, score, member],
                                 client=pipe)
            tags.append(("cached", rule.kind, owner))

        def plain(command: Any, *args: Any, **kwargs: Any) -> None:
            command(*args, **kwargs)
            tags.append(("plain",))

        for e in effects:
            match e:
                case TimelineAdd():
                    guarded_zadd(TIMELINE, e.user_id, e.created_ms, e.post_id)
                case TimelineRemove():
                    if TIMELINE.completeness is Completeness.CAPPED:
                        pipe.zcard(TIMELINE.key(k, e.user_id))
                        tags.append(("card", e.user_id))
                    plain(pipe.zrem, TIMELINE.key(k, e.user_id), e.post_id)
                case PostUpsert():
                    plain(pipe.hset, k.post(e.post_id), mapping=encode_post(e))
                case PostRetract():
                    plain(pipe.delete, k.post(e.post_id))
                case OutboxAdd():
                    guarded_zadd(OUTBOX, e.author_id, e.created_ms, e.post_id)
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
                          mapping=encode_post_counters(e.likes, e.comments))
                case UserCounterSet():
                    plain(pipe.hset, k.user_counters(e.user_id),
                          mapping=encode_user_counters({e.field: e.value}))
                case EdgeUpsert() | EdgeDelete():
                    pass  # the follow graph lives in the CQL store only
                case _:
                    raise TypeError(f"unknown effect {e!r}")
        # Realtime push (feedline.stores.push): the feed and delete events, same pipeline.
        tags.extend([("plain",)] * queue_feed_events(pipe, k, effects))
        if not tags:
            return
        reload: dict[str, tuple[str, str]] = {}
        for tag, reply in zip(tags, pipe.execute(), strict=True):
            if tag[0] == "cached" and reply == 0:  # not cached: rebuild it whole
                kind, owner = tag[1], tag[2]
                reload[SET_RULES[kind].key(k, owner)] = (kind, owner)
            elif tag[0] == "card" and reply >= self.cap:  # a full timeline shrank: refill
                reload[TIMELINE.key(k, tag[1])] = (TIMELINE.kind, tag[1])
        self._reload(reload)

    def _reload(self, targets: dict[str, tuple[str, str]]) -> None:
        """Rebuild sorted sets from the CQL store (the newest ``cap`` entries)."""
        if not targets:
            return
        items = list(targets.items())
        pages = execute_concurrent(
            self.session,
            [(self.stmts[str(SET_RULES[kind].listing)], (owner, self.cap))
             for _key, (kind, owner) in items],
            concurrency=self.concurrency,
            raise_on_first_error=True,
        )
        pipe = self.redis.pipeline(transaction=True)
        for (key, (kind, owner)), (_ok, rows) in zip(items, pages, strict=True):
            if (SET_RULES[kind].celebrities_only
                    and not self.redis.sismember(self.keys.celebrities(), owner)):
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
                batch.add(self.stmts[name], bind_write(name, values, self._write_time()))
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
