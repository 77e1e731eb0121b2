"""Write a store image: replace whole partitions and hashes, at one rebuild write time.

Every rebuilt CQL partition (a user's timeline, an author's followers, ...) is deleted at
write time ``T`` and its rows inserted at ``T + 1`` in the same single-partition unlogged
batch, so the result is exactly the image whatever the store held before and however
often the rebuild runs. A Redis timeline is built under a scratch key and renamed over the
live one, so a reader never sees a half-built timeline and no long transaction blocks
reads; outboxes, post hashes and counters are replaced in MULTI/EXEC pipelines. Every
Redis key it replaces gets ``T + 1`` as its version (``RedisKeys.versions``), so the
streaming writer's guard drops a streaming write older than the rebuild, applied after
it, in Redis as the CQL store does. CQL statements are prepared and run concurrently.

On a Redis Cluster (``redis.cluster``) the same Redis commands go through
``feedline.stores.cluster_writes.SlotTransactions``: each slot's (one owner's keys, their
scratch copies and versions) run as one atomic step, so a key and its version still
change together; keys of different slots no longer change in one MULTI/EXEC.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence, Set
from datetime import UTC, datetime
from typing import Any

import redis
from cassandra.query import BatchStatement, BatchType

from feedline.rebuild.image import StoreImage
from feedline.rules.memory import newest
from feedline.rules.notification_book import newest_groups
from feedline.rules.notifications import Group
from feedline.stores.cluster_writes import slot_multi_script, write_pipeline
from feedline.stores.cql import execute_all
from schemas.cql_statements import (
    USER_COUNTER_WRITES,
    bind_write,
    media_values,
    ms_to_dt,
    prepare,
)
from schemas.redis_hashes import encode_post, encode_post_counters, encode_user_counters
from schemas.redis_keys import RedisKeys
from schemas.redis_notifications import NOTIFICATION_CAP, encode_group
from schemas.redis_sets import FOLLOWED_CELEBRITIES, OUTBOX, TIMELINE

#: (created_ms, post_id, author_id) of one timeline row.
TimelineRow = tuple[int, str, str]

#: The statements (``schemas.cql_statements``) the rebuild prepares.
_STATEMENTS = (
    "timeline_clear", "timeline_add", "following_clear", "following_add", "followers_clear",
    "follower_add", "user_posts_clear", "user_post_add", "post_clear", "post_row",
    "post_retract", "celebrity_add", "celebrity_remove", "post_counters_clear",
    "post_counters_set", "user_counters_clear", *USER_COUNTER_WRITES.values(),
    "notification_groups_clear", "notification_group_add",
)


#: Suffix of the scratch key a Redis value is built under before it replaces the live key.
SCRATCH = ":rebuilding"


def _swap(pipe: Any, key: str, filled: bool) -> None:
    """Put the scratch copy in place of ``key`` (one atomic RENAME), or delete ``key``.

    Readers see the old value or the new one, and no long MULTI/EXEC holds Redis up.
    """
    if filled:
        pipe.rename(f"{key}{SCRATCH}", key)
    else:
        pipe.delete(key)


def rebuild_write_time() -> int:
    """A write time (µs) for a rebuild: now, so it replaces what streaming wrote before."""
    return time.time_ns() // 1000


class Throttle:
    """Sleeps so that at most ``per_second`` units pass per second (None: no limit)."""

    def __init__(self, per_second: float | None) -> None:
        self.per_second = per_second
        self.started = time.monotonic()
        self.passed = 0.0

    def take(self, units: float) -> None:
        """Account for ``units`` and sleep if ahead of the rate."""
        if not self.per_second:
            return
        self.passed += units
        ahead = self.passed / self.per_second - (time.monotonic() - self.started)
        if ahead > 0:
            time.sleep(ahead)


class ImageWriter:
    """Writes rebuilt partitions and keys to one keyspace and one Redis prefix."""

    def __init__(self, session: Any, client: redis.Redis, keys: RedisKeys, *,
                 timeline_cap: int, write_time_us: int, concurrency: int = 64,
                 batch_rows: int = 100) -> None:
        self.session = session
        self.redis = client
        self.keys = keys
        self.cap = timeline_cap
        self.clear_at = write_time_us
        self.write_at = write_time_us + 1
        self.concurrency = concurrency
        self.batch_rows = batch_rows
        self.stmts = prepare(session, _STATEMENTS)
        self.rows_written = 0
        self._slot_multi = slot_multi_script(client)  # on a cluster only

    def _pipeline(self, *, transaction: bool) -> Any:
        """The Redis pipeline of one step (``cluster_writes.write_pipeline``)."""
        return write_pipeline(self.redis, self._slot_multi, transaction=transaction)

    # --- CQL plumbing -------------------------------------------------------------------

    def _partition(self, clear: str, key: str, add: str,
                   rows: Sequence[tuple[Any, ...]]) -> list[BatchStatement]:
        """Batches replacing one partition: its delete at T, then its rows at T + 1."""
        batches: list[BatchStatement] = []
        batch = BatchStatement(batch_type=BatchType.UNLOGGED)
        batch.add(self.stmts[clear], bind_write(clear, (key,), self.clear_at))
        for n, row in enumerate(rows):
            if n and n % self.batch_rows == 0:
                batches.append(batch)
                batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            batch.add(self.stmts[add], bind_write(add, row, self.write_at))
        batches.append(batch)
        self.rows_written += len(rows)
        return batches

    def _version(self, pipe: Any, key: str, row: str = "") -> None:
        """Record the rebuild's write time as the version of ``key`` (or of one member)."""
        pipe.hset(self.keys.versions(key), row, self.write_at)

    def _run(self, statements: list[Any]) -> None:
        if statements:
            execute_all(self.session, [(s, None) for s in statements],
                        concurrency=self.concurrency)

    # --- readers' timelines -------------------------------------------------------------

    def write_timelines(self, timelines: dict[str, list[TimelineRow]],
                        followed: dict[str, set[str]], users: Iterable[str]) -> None:
        """Replace the home timelines (CQL and Redis) and followed celebrities of users."""
        users = list(users)
        statements: list[Any] = []
        for user in users:
            rows = [(user, ms_to_dt(ms), post, author)
                    for ms, post, author in sorted(timelines.get(user, []), reverse=True)]
            statements.extend(self._partition("timeline_clear", user, "timeline_add", rows))
        self._run(statements)
        # Each key is built under a scratch name and renamed over the live one: readers see
        # the old value or the new one, and no long MULTI/EXEC holds Redis up for them.
        # Completeness (``schemas.redis_sets``): a timeline is capped; the followed-celebrity
        # set is written without its marker, so a reader completes it from the CQL store.
        pipe = self._pipeline(transaction=False)
        for user in users:
            entries = {post: ms for ms, post, _ in timelines.get(user, [])}
            kept = newest(entries, self.cap) if TIMELINE.capped else list(entries)
            cached = {p: entries[p] for p in kept}
            key = TIMELINE.key(self.keys, user)
            if cached:
                pipe.delete(f"{key}{SCRATCH}")
                pipe.zadd(f"{key}{SCRATCH}", cached)
            _swap(pipe, key, bool(cached))
            self._version(pipe, key)
            key = FOLLOWED_CELEBRITIES.key(self.keys, user)
            self._version(pipe, key)
            if followed.get(user):
                pipe.delete(f"{key}{SCRATCH}")
                pipe.sadd(f"{key}{SCRATCH}", *sorted(followed[user]))
            _swap(pipe, key, bool(followed.get(user)))
        pipe.execute()

    def write_following(self, following: dict[str, list[tuple[str, int]]],
                        users: Iterable[str]) -> None:
        """Replace the ``following`` partitions of users: (followee, since_ms) rows."""
        statements: list[Any] = []
        for user in users:
            rows = [(user, followee, ms_to_dt(ms))
                    for followee, ms in sorted(following.get(user, []))]
            statements.extend(self._partition("following_clear", user, "following_add", rows))
        self._run(statements)

    # --- authors ------------------------------------------------------------------------

    def write_authors(self, image: StoreImage, *, all_tables: bool) -> None:
        """Celebrity flags, outboxes and post hashes of the image's authors.

        With ``all_tables`` also their ``posts`` rows, ``user_posts`` and ``followers``
        partitions (the follow graph and the profiles).
        """
        feed = image.feed
        statements: list[Any] = []
        pipe = self._pipeline(transaction=True)
        for author in sorted(image.authors):
            if author in feed.celebrities:
                statements.append(self._one("celebrity_add", (author,), self.write_at))
                pipe.sadd(self.keys.celebrities(), author)
            else:
                statements.append(self._one("celebrity_remove", (author,), self.clear_at))
                pipe.srem(self.keys.celebrities(), author)
            self._version(pipe, self.keys.celebrities(), author)
            self._version(pipe, OUTBOX.key(self.keys, author))
            # Outboxes are cached for celebrities only (``OUTBOX.celebrities_only``): the
            # image's is empty for anyone else.
            pipe.delete(OUTBOX.key(self.keys, author))
            outbox = image.cached_outbox(author)
            if outbox:
                pipe.zadd(OUTBOX.key(self.keys, author), outbox)
        for post_id in sorted(image.post_rows):
            pipe.delete(self.keys.post(post_id))
            self._version(pipe, self.keys.post(post_id))
            upsert = feed.posts.get(post_id)
            if upsert is not None:
                pipe.hset(self.keys.post(post_id), mapping=encode_post(upsert))
        if all_tables:
            statements.extend(self._graph_and_profiles(image))
        self._run(statements)
        pipe.execute()

    def _one(self, name: str, values: tuple[Any, ...], write_time_us: int) -> BatchStatement:
        batch = BatchStatement(batch_type=BatchType.UNLOGGED)
        batch.add(self.stmts[name], bind_write(name, values, write_time_us))
        return batch

    def _graph_and_profiles(self, image: StoreImage) -> list[Any]:
        feed = image.feed
        followers: dict[str, list[tuple[str, str, datetime]]] = {a: [] for a in image.authors}
        for (followee, follower), ms in sorted(feed.edges.items()):
            followers.setdefault(followee, []).append((followee, follower, ms_to_dt(ms)))
        profiles: dict[str, list[tuple[str, datetime, str]]] = {a: [] for a in image.authors}
        for post_id, upsert in sorted(feed.posts.items()):
            profiles.setdefault(upsert.author_id, []).append(
                (upsert.author_id, ms_to_dt(upsert.created_ms), post_id))
        statements: list[Any] = []
        for author in sorted(image.authors):
            statements.extend(self._partition("followers_clear", author, "follower_add",
                                              followers[author]))
            statements.extend(self._partition("user_posts_clear", author, "user_post_add",
                                              profiles[author]))
        now = datetime.now(UTC)
        for post_id, row in sorted(image.post_rows.items()):
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            batch.add(self.stmts["post_clear"], bind_write("post_clear", (post_id,), self.clear_at))
            if row.created_ms is not None:
                media = media_values(row.media or ())
                batch.add(self.stmts["post_row"], bind_write("post_row", (
                    post_id, row.author_id, row.caption, media, ms_to_dt(row.created_ms),
                    row.deleted, now if row.deleted else None, row.event_id), self.write_at))
            else:
                batch.add(self.stmts["post_retract"], bind_write(
                    "post_retract", (row.author_id, now, post_id), self.write_at))
            statements.append(batch)
            self.rows_written += 1
        return statements

    # --- counters -----------------------------------------------------------------------

    def write_counters(self, image: StoreImage, *, users: Set[str] | None = None) -> None:
        """Post and user counters of the image (only ``users``' user counters when given)."""
        feed = image.feed
        statements: list[Any] = []
        pipe = self._pipeline(transaction=True)
        if users is None:
            for post_id in sorted(image.counter_posts):
                batch = BatchStatement(batch_type=BatchType.UNLOGGED)
                batch.add(self.stmts["post_counters_clear"],
                          bind_write("post_counters_clear", (post_id,), self.clear_at))
                pipe.delete(self.keys.post_counters(post_id))
                self._version(pipe, self.keys.post_counters(post_id))
                counts = feed.post_counters.get(post_id)
                if counts is not None:
                    batch.add(self.stmts["post_counters_set"], bind_write(
                        "post_counters_set", (post_id, *counts), self.write_at))
                    pipe.hset(self.keys.post_counters(post_id),
                              mapping=encode_post_counters(*counts))
                    self.rows_written += 1
                statements.append(batch)
        for user in sorted(image.counter_users if users is None
                           else image.counter_users & users):
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            batch.add(self.stmts["user_counters_clear"],
                      bind_write("user_counters_clear", (user,), self.clear_at))
            pipe.delete(self.keys.user_counters(user))
            self._version(pipe, self.keys.user_counters(user))
            values = feed.user_counters.get(user, {})
            for name, statement in USER_COUNTER_WRITES.items():
                if name in values:
                    batch.add(self.stmts[statement],
                              bind_write(statement, (values[name], user), self.write_at))
            if values:
                pipe.hset(self.keys.user_counters(user), mapping=encode_user_counters(values))
                self.rows_written += 1
            statements.append(batch)
        self._run(statements)
        pipe.execute()

    # --- notifications ------------------------------------------------------------------

    def write_notifications(self, groups: Mapping[str, Mapping[str, Group]],
                            recipients: Iterable[str], *, cap: int = NOTIFICATION_CAP) -> None:
        """Replace recipients' notification groups: CQL rows, then the Redis list.

        Each recipient's ``notification_groups`` partition is deleted at T and its live
        groups inserted at T + 1 (``latest_at`` = the group's ``latest_ms``); in Redis its
        ZSET and payload HASH are rebuilt with the newest ``cap`` groups under scratch
        keys and renamed over the live ones in one MULTI/EXEC (a recipient without groups
        has neither, as the streaming writer leaves it). Read markers are the user's own
        and are left alone.
        """
        users = sorted(recipients)
        statements: list[Any] = []
        for user in users:
            owned = groups.get(user, {})
            rows = [(user, ms_to_dt(g.latest_ms), key, g.type, g.post_id, g.count,
                     list(g.actors)) for key, g in sorted(owned.items())]
            statements.extend(self._partition("notification_groups_clear", user,
                                              "notification_group_add", rows))
        self._run(statements)
        pipe = self._pipeline(transaction=True)
        for user in users:
            shown = newest_groups(dict(groups.get(user, {})), cap)
            zset, payloads = self.keys.notifications(user), self.keys.notification_groups(user)
            if shown:
                pipe.delete(f"{zset}{SCRATCH}", f"{payloads}{SCRATCH}")
                pipe.zadd(f"{zset}{SCRATCH}", {key: g.latest_ms for key, g in shown})
                pipe.hset(f"{payloads}{SCRATCH}", mapping={
                    key: encode_group(g.type, g.post_id, g.count, g.actors, g.latest_ms)
                    for key, g in shown})
            _swap(pipe, zset, bool(shown))
            _swap(pipe, payloads, bool(shown))
        pipe.execute()
