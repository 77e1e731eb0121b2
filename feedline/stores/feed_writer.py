"""Apply rule effects to the CQL store and Redis, batched and idempotent.

One ``write`` call takes effects, each with its write time (``write_stamped``: the times
the rules keys gave them, ``feedline.rules.write_order``; ``write``: times from this
writer's clock, growing in effect order), and:

1. runs the CQL statements — all prepared, each ``USING TIMESTAMP`` its effect's write
   time — grouped into unlogged batches executed concurrently; last-writer-wins on the
   write times keeps each row's order whatever the grouping, and a replayed or late write
   never overwrites a newer one;
2. then updates Redis in one pipeline, every write through ``lua/write_guarded.lua``: it
   applies only when newer than the version its row keeps (``RedisKeys.versions``). Sorted
   sets (timelines, outboxes) are only added to when the key exists; a missing key means
   "not cached" (never built or evicted), and is rebuilt from the CQL store instead, so a
   partial timeline is never mistaken for a whole one. A full timeline that loses an entry
   is refilled from the CQL store, so Redis always holds exactly the newest
   ``timeline_cap``. A rebuilt set comes from CQL rows this writer wrote itself: every
   effect on one owner's rows goes through one writer (``write_order.write_owner``).

On a Redis Cluster (``redis.cluster``) the same writes go through
``feedline.stores.cluster_writes``: every script call touches one slot (a key and its
versions hash share its tag), the pipeline is redis-py's cluster pipeline (one round trip
per node), and a rebuild replaces each key in one atomic step of its slot.

Counters are absolute values; every write is an upsert or a delete keyed by ids at its
write time, so applying the same effects twice changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence, Set
from datetime import UTC, datetime
from typing import Any

import redis
from cassandra import OperationTimedOut, Unavailable, WriteTimeout
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
from feedline.rules.write_order import StampedEffect
from feedline.stores.cluster_writes import ScriptPipeline, slot_multi_script, write_pipeline
from feedline.stores.cql import execute_all
from feedline.stores.lua import source
from feedline.stores.push import PushEvent, queue, queue_feed_events
from schemas.cql_statements import (
    USER_COUNTER_WRITES,
    bind_write,
    dt_to_ms,
    media_values,
    ms_to_dt,
    prepare,
)
from schemas.redis_hashes import (
    USER_COUNTER_FIELDS,
    encode_post,
    encode_post_counters,
    encode_user_counters,
)
from schemas.redis_keys import DROPPED_FIELD, RedisKeys
from schemas.redis_sets import OUTBOX, SET_RULES, TIMELINE, Completeness, SetRule

_TRANSIENT = (WriteTimeout, OperationTimedOut, Unavailable)

#: The statements (``schemas.cql_statements``) the writer prepares.
_WRITES = (
    "post_upsert", "user_post_add", "post_retract", "user_post_remove", "timeline_add",
    "timeline_remove", "follower_add", "following_add", "follower_remove", "following_remove",
    "celebrity_add", "celebrity_remove", "post_counters_set", *USER_COUNTER_WRITES.values(),
)
_READS = (*(str(r.listing) for r in SET_RULES.values() if r.listing), "post_written",
          "user_counters_written")


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
        # Every write carries an explicit write time (microseconds, growing per row in effect
        # order), so grouping statements into batches or running them concurrently can
        # never reorder two effects on the same row.
        self.stmts = prepare(session, (*_WRITES, *_READS))
        self.batch_size = batch_size
        self._last_micros = 0
        self._guarded = client.register_script(source("write_guarded.lua"))
        self._slot_multi = slot_multi_script(client)  # on a cluster only

    # --- CQL ----------------------------------------------------------------------------

    def _written_posts(self, items: Sequence[StampedEffect]) -> set[tuple[str, int]]:
        """(post_id, write time) of the post upserts whose payload the store holds already.

        ``posts.media`` is a non-frozen list: a second INSERT at the same write time would
        append its elements again instead of replacing them. So a replayed upsert (after a
        restore) is left out when the row's payload was written at or after its time.
        """
        upserts = [(at, e.post_id) for at, e in items if isinstance(e, PostUpsert)]
        if not upserts:
            return set()
        rows = execute_all(
            self.session, [(self.stmts["post_written"], (post_id,)) for _at, post_id in upserts],
            concurrency=self.concurrency)
        done = set()
        for (at, post_id), result in zip(upserts, rows, strict=True):
            row = result.one()
            if row is not None and row.written is not None and row.written >= at:
                done.add((post_id, at))
        return done

    def _cql(self, items: Sequence[StampedEffect], written_posts: Set[tuple[str, int]]
             ) -> list[tuple[str, tuple[Any, ...], int]]:
        """(statement name, bind values without the write time, write time), in order."""
        out: list[tuple[str, tuple[Any, ...], int]] = []
        for at, e in items:
            ops: list[tuple[str, tuple[Any, ...]]] = []
            match e:
                case TimelineAdd():
                    ops.append(("timeline_add",
                                (e.user_id, ms_to_dt(e.created_ms), e.post_id, e.author_id)))
                case TimelineRemove():
                    ops.append(("timeline_remove",
                                (e.user_id, ms_to_dt(e.created_ms), e.post_id)))
                case PostUpsert():
                    created = ms_to_dt(e.created_ms)
                    media = media_values(e.media)
                    if (e.post_id, at) not in written_posts:
                        ops.append(("post_upsert", (e.post_id, e.author_id, e.caption, media,
                                                    created, e.event_id)))
                    ops.append(("user_post_add", (e.author_id, created, e.post_id)))
                case PostRetract():
                    deleted_at = datetime.fromtimestamp(at / 1_000_000, tz=UTC)
                    ops.append(("post_retract", (e.author_id, deleted_at, e.post_id)))
                    if e.created_ms is not None:
                        ops.append(("user_post_remove",
                                    (e.author_id, ms_to_dt(e.created_ms), e.post_id)))
                case EdgeUpsert():
                    since = ms_to_dt(e.followed_ms)
                    ops.append(("follower_add", (e.followee_id, e.follower_id, since)))
                    ops.append(("following_add", (e.follower_id, e.followee_id, since)))
                case EdgeDelete():
                    ops.append(("follower_remove", (e.followee_id, e.follower_id)))
                    ops.append(("following_remove", (e.follower_id, e.followee_id)))
                case CelebritySet():
                    name = "celebrity_add" if e.celebrity else "celebrity_remove"
                    ops.append((name, (e.author_id,)))
                case PostCountersSet():
                    ops.append(("post_counters_set", (e.post_id, e.likes, e.comments)))
                case UserCounterSet():
                    ops.append((USER_COUNTER_WRITES[e.field], (e.value, e.user_id)))
                case OutboxAdd() | OutboxRemove() | OutboxClear():
                    pass  # the CQL outbox is user_posts, written with the post itself
                case FollowedCelebrityAdd() | FollowedCelebrityRemove():
                    pass  # derivable in CQL from following + celebrities
                case _:
                    raise TypeError(f"unknown effect {e!r}")
            out.extend((name, values, at) for name, values in ops)
        return out

    # --- Redis --------------------------------------------------------------------------

    def _redis(self, items: Sequence[StampedEffect],
               pushes: Sequence[PushEvent] | None = None) -> None:
        k = self.keys
        pipe = ScriptPipeline(self.redis)
        # One tag per queued write, to read its reply (-1: older than its row's version,
        # nothing changed; a key not cached says 0 even then): ("cached", kind, owner) for
        # an add to a sorted set kept only where cached, ("card", owner) for a removal from
        # a capped timeline (the reply is its size before), ("plain",) otherwise (the
        # completeness rules: ``schemas.redis_sets``).
        tags: list[tuple[str, ...]] = []

        def guarded(tag: tuple[str, ...], key: str, op: str, row: str, at: int,
                    *args: Any) -> None:
            pipe.script(self._guarded, [key, k.versions(key)], [op, row, at, *args])
            tags.append(tag)

        def cached_add(rule: SetRule, owner: str, at: int, score: int, member: str) -> None:
            guarded(("cached", rule.kind, owner), rule.key(k, owner), "zadd_cached", member, at,
                    self.cap, score, member)

        def fields(mapping: dict[str, Any]) -> list[Any]:
            return [x for pair in mapping.items() for x in pair]

        plain: tuple[str, ...] = ("plain",)
        for at, e in items:
            match e:
                case TimelineAdd():
                    cached_add(TIMELINE, e.user_id, at, e.created_ms, e.post_id)
                case TimelineRemove():
                    capped = TIMELINE.completeness is Completeness.CAPPED
                    tag = ("card", e.user_id) if capped else plain
                    guarded(tag, TIMELINE.key(k, e.user_id), "zrem", e.post_id, at, e.post_id)
                case PostUpsert():
                    guarded(plain, k.post(e.post_id), "hset", "", at, *fields(encode_post(e)))
                case PostRetract():
                    guarded(plain, k.post(e.post_id), "del", "", at)
                case OutboxAdd():
                    cached_add(OUTBOX, e.author_id, at, e.created_ms, e.post_id)
                case OutboxRemove():
                    guarded(plain, k.outbox(e.author_id), "zrem", e.post_id, at, e.post_id)
                case OutboxClear():
                    guarded(plain, k.outbox(e.author_id), "del", "", at)
                case CelebritySet():
                    # Applied, it also rebuilds (or drops) the outbox: whatever order the
                    # flag and the outbox writes arrive in, the outbox follows the flag.
                    guarded(("celebrity", e.author_id), k.celebrities(),
                            "sadd" if e.celebrity else "srem", e.author_id, at, e.author_id)
                case FollowedCelebrityAdd():
                    guarded(plain, k.followed_celebrities(e.user_id), "sadd", e.author_id, at,
                            e.author_id)
                case FollowedCelebrityRemove():
                    guarded(plain, k.followed_celebrities(e.user_id), "srem", e.author_id, at,
                            e.author_id)
                case PostCountersSet():
                    guarded(plain, k.post_counters(e.post_id), "hset", "", at,
                            *fields(encode_post_counters(e.likes, e.comments)))
                case UserCounterSet():
                    # Only into a cached hash: one field would make a partial hash of a
                    # lost or evicted one, whose missing fields read as zeros.
                    guarded(("counters", e.user_id), k.user_counters(e.user_id), "hset_cached",
                            e.field, at, *fields(encode_user_counters({e.field: e.value})))
                case EdgeUpsert() | EdgeDelete():
                    pass  # the follow graph lives in the CQL store only
                case _:
                    raise TypeError(f"unknown effect {e!r}")
        # Realtime push (feedline.stores.push): the feed and delete events, same pipeline.
        queued = (queue_feed_events(pipe.pipe, k, [e for _at, e in items]) if pushes is None
                  else queue(pipe.pipe, k, pushes))
        tags.extend([("plain",)] * queued)
        if not tags:
            return
        reload: dict[str, tuple[str, str]] = {}
        counters: set[str] = set()
        for tag, reply in zip(tags, pipe.execute(), strict=True):
            if tag[0] == "cached" and reply == 0:  # not cached: rebuild it whole
                kind, owner = tag[1], tag[2]
                reload[SET_RULES[kind].key(k, owner)] = (kind, owner)
            elif tag[0] == "card" and (reply >= self.cap or reply == -1):
                # A full timeline shrank: refill. A replayed removal (-1) too: the refill
                # after its first write may never have run (the writer stopped between).
                reload[TIMELINE.key(k, tag[1])] = (TIMELINE.kind, tag[1])
            elif tag[0] == "counters" and reply == 0:  # not cached: fill it whole
                counters.add(tag[1])
            elif tag[0] == "celebrity" and reply == 1:
                reload[OUTBOX.key(k, tag[1])] = (OUTBOX.kind, tag[1])
        self._reload(reload)
        self._fill_user_counters(sorted(counters))

    def _reload(self, targets: dict[str, tuple[str, str]]) -> None:
        """Rebuild sorted sets from the CQL store (the newest ``cap`` entries).

        An outbox of an author the celebrity set does not hold goes instead. On one Redis
        in one MULTI/EXEC; on a cluster each key (with its versions hash) in one atomic step
        of its slot, and a dropped outbox leaves the time of its drop (``DROPPED_FIELD``):
        a reader's outbox repair whose CQL read began before it is refused, as it is by the
        single-node repair's one script (``cluster_cache``'s two-step repair).
        """
        if not targets:
            return
        items = list(targets.items())
        pages = execute_all(
            self.session,
            [(self.stmts[str(SET_RULES[kind].listing)], (owner, self.cap))
             for _key, (kind, owner) in items],
            concurrency=self.concurrency,
        )
        pipe = write_pipeline(self.redis, self._slot_multi, transaction=True)
        for (key, (kind, owner)), rows in zip(items, pages, strict=True):
            pipe.delete(key)
            if (SET_RULES[kind].celebrities_only
                    and not self.redis.sismember(self.keys.celebrities(), owner)):
                if self._slot_multi is not None:  # on a cluster: when it was dropped
                    pipe.hset(self.keys.versions(key), DROPPED_FIELD, time.time_ns() // 1000)
                continue  # no outbox for an author who is not a celebrity
            entries = {row.post_id: dt_to_ms(row.created_at) for row in rows}
            if entries:
                pipe.zadd(key, entries)
        pipe.execute()

    def _fill_user_counters(self, users: Sequence[str]) -> None:
        """Cache the whole counters hash of users who have none, from the CQL store.

        Read after this writer's own CQL writes (the counters of a user are written by
        one writer), so the row holds what the skipped field writes set; each field's CQL
        write time becomes its version. A field never written stays absent, as in the CQL
        row and in what the rebuild writes (absent reads as 0).
        """
        if not users:
            return
        rows = execute_all(
            self.session, [(self.stmts["user_counters_written"], (user,)) for user in users],
            concurrency=self.concurrency)
        pipe = ScriptPipeline(self.redis)
        for user, found in zip(users, rows, strict=True):
            row = found.one()
            triples: list[Any] = []
            for name in USER_COUNTER_FIELDS:
                value = getattr(row, name, None) if row is not None else None
                if value is not None:
                    triples += [name, value, getattr(row, f"{name}_at", None) or 0]
            if not triples:
                continue
            key = self.keys.user_counters(user)
            pipe.script(self._guarded, [key, self.keys.versions(key)],
                        ["fill_hash", "", 0, *triples])
        pipe.execute()

    def _write_time(self) -> int:
        """A microsecond write time from this writer's clock, after the previous one."""
        self._last_micros = max(self._last_micros + 1, time.time_ns() // 1000)
        return self._last_micros

    def _batches(self, ops: list[tuple[str, tuple[Any, ...], int]]) -> list[tuple[Any, None]]:
        """Group the stamped writes into unlogged batches.

        The batches spare the client one request and one response per statement (the
        driver's response handling dominated the writer's CPU); atomicity is not needed
        and not asked for, and the write times keep each row's order.
        """
        out: list[tuple[Any, None]] = []
        for start in range(0, len(ops), self.batch_size):
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            for name, values, at in ops[start:start + self.batch_size]:
                batch.add(self.stmts[name], bind_write(name, values, at))
            out.append((batch, None))
        return out

    # --- both ---------------------------------------------------------------------------

    def write(self, effects: Iterable[Effect]) -> int:
        """Apply effects in order, at write times from this writer's clock (``write_stamped``).

        For callers that apply every effect through one writer (tests, the in-process
        engine); the streaming jobs use the rules keys' write times.
        """
        return self.write_stamped([(self._write_time(), e) for e in effects])

    def write_stamped(self, items: Iterable[StampedEffect],
                      pushes: Sequence[PushEvent] | None = None) -> int:
        """Apply (write time, effect) pairs: the CQL store first, then Redis.

        Returns how many were applied (older writes included: they change nothing). A CQL
        timeout or unavailable error is retried with backoff (every write is idempotent,
        so re-sending the whole batch is safe); after ``retries`` the error propagates and
        the job restarts from its last checkpoint. ``pushes``: the realtime events to
        publish with them (judged per event by the streaming jobs); None: judged among
        ``items`` (``push.feed_events``).
        """
        batch = list(items)
        if not batch:
            return 0
        for attempt in range(self.retries + 1):
            try:
                statements = self._batches(self._cql(batch, self._written_posts(batch)))
                if statements:
                    execute_all(self.session, statements, concurrency=self.concurrency)
                break
            except _TRANSIENT:
                if attempt == self.retries:
                    raise
                time.sleep(min(5.0, 0.2 * 2**attempt))
        self._redis(batch, pushes)
        return len(batch)
