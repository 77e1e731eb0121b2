"""Write a store image: replace whole partitions and hashes, at one rebuild write time.

Every rebuilt CQL partition (a user's timeline, an author's followers, ...) is deleted at
write time ``T`` and its rows inserted at ``T + 1`` in the same single-partition unlogged
batch, so the result is exactly the image whatever the store held before and however
often the rebuild runs. A Redis timeline is built under a scratch key and renamed over the
live one, so a reader never sees a half-built timeline and no long transaction blocks
reads; outboxes, post hashes and counters are replaced in MULTI/EXEC pipelines. CQL
statements are prepared and run concurrently.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import redis
from cassandra.concurrent import execute_concurrent
from cassandra.query import BatchStatement, BatchType

from feedline.rebuild.image import StoreImage
from feedline.rules.memory import newest
from feedline.stores.feed_writer import ms_to_dt, post_hash
from schemas.redis_keys import RedisKeys

#: (created_ms, post_id, author_id) of one timeline row.
TimelineRow = tuple[int, str, str]

_CQL = {
    "timeline_clear": "DELETE FROM timelines USING TIMESTAMP ? WHERE user_id = ?",
    "timeline_add": "INSERT INTO timelines (user_id, created_at, post_id, author_id) "
    "VALUES (?, ?, ?, ?) USING TIMESTAMP ?",
    "following_clear": "DELETE FROM following USING TIMESTAMP ? WHERE follower_id = ?",
    "following_add": "INSERT INTO following (follower_id, followee_id, followed_at) "
    "VALUES (?, ?, ?) USING TIMESTAMP ?",
    "followers_clear": "DELETE FROM followers USING TIMESTAMP ? WHERE followee_id = ?",
    "followers_add": "INSERT INTO followers (followee_id, follower_id, followed_at) "
    "VALUES (?, ?, ?) USING TIMESTAMP ?",
    "user_posts_clear": "DELETE FROM user_posts USING TIMESTAMP ? WHERE author_id = ?",
    "user_posts_add": "INSERT INTO user_posts (author_id, created_at, post_id) VALUES (?, ?, ?) "
    "USING TIMESTAMP ?",
    "post_clear": "DELETE FROM posts USING TIMESTAMP ? WHERE post_id = ?",
    "post_live": "INSERT INTO posts (post_id, author_id, caption, media, created_at, deleted, "
    "deleted_at, event_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?",
    "post_retracted": "UPDATE posts USING TIMESTAMP ? SET author_id = ?, deleted = true, "
    "deleted_at = ? WHERE post_id = ?",
    "celebrity_add": "INSERT INTO celebrities (author_id) VALUES (?) USING TIMESTAMP ?",
    "celebrity_remove": "DELETE FROM celebrities USING TIMESTAMP ? WHERE author_id = ?",
    "post_counters_clear": "DELETE FROM post_counters USING TIMESTAMP ? WHERE post_id = ?",
    "post_counters_set": "INSERT INTO post_counters (post_id, likes, comments) VALUES (?, ?, ?) "
    "USING TIMESTAMP ?",
    "user_counters_clear": "DELETE FROM user_counters USING TIMESTAMP ? WHERE user_id = ?",
    "user_followers": "UPDATE user_counters USING TIMESTAMP ? SET followers = ? WHERE user_id = ?",
    "user_following": "UPDATE user_counters USING TIMESTAMP ? SET following = ? WHERE user_id = ?",
    "user_posts_count": "UPDATE user_counters USING TIMESTAMP ? SET posts = ? "
    "WHERE user_id = ?",
}
_COUNTER_FIELD = {"followers": "user_followers", "following": "user_following",
                  "posts": "user_posts_count"}


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
        self.stmts = {name: session.prepare(cql) for name, cql in _CQL.items()}
        self.rows_written = 0

    # --- CQL plumbing -------------------------------------------------------------------

    def _partition(self, clear: str, key: str, add: str,
                   rows: Sequence[tuple[Any, ...]]) -> list[BatchStatement]:
        """Batches replacing one partition: its delete at T, then its rows at T + 1."""
        batches: list[BatchStatement] = []
        batch = BatchStatement(batch_type=BatchType.UNLOGGED)
        batch.add(self.stmts[clear], (self.clear_at, key))
        for n, row in enumerate(rows):
            if n and n % self.batch_rows == 0:
                batches.append(batch)
                batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            batch.add(self.stmts[add], (*row, self.write_at))
        batches.append(batch)
        self.rows_written += len(rows)
        return batches

    def _run(self, statements: list[Any]) -> None:
        if statements:
            execute_concurrent(self.session, [(s, None) for s in statements],
                               concurrency=self.concurrency, raise_on_first_error=True)

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
        pipe = self.redis.pipeline(transaction=False)
        for user in users:
            entries = {post: ms for ms, post, _ in timelines.get(user, [])}
            cached = {p: entries[p] for p in newest(entries, self.cap)}
            key = self.keys.timeline(user)
            if cached:
                pipe.delete(f"{key}{SCRATCH}")
                pipe.zadd(f"{key}{SCRATCH}", cached)
            _swap(pipe, key, bool(cached))
            key = self.keys.followed_celebrities(user)
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
        pipe = self.redis.pipeline(transaction=True)
        for author in sorted(image.authors):
            if author in feed.celebrities:
                statements.append(self._one("celebrity_add", (author, self.write_at)))
                pipe.sadd(self.keys.celebrities(), author)
            else:
                statements.append(self._one("celebrity_remove", (self.clear_at, author)))
                pipe.srem(self.keys.celebrities(), author)
            pipe.delete(self.keys.outbox(author))
            outbox = image.cached_outbox(author)
            if outbox:
                pipe.zadd(self.keys.outbox(author), outbox)
        for post_id in sorted(image.post_rows):
            pipe.delete(self.keys.post(post_id))
            upsert = feed.posts.get(post_id)
            if upsert is not None:
                pipe.hset(self.keys.post(post_id), mapping=post_hash(upsert))
        if all_tables:
            statements.extend(self._graph_and_profiles(image))
        self._run(statements)
        pipe.execute()

    def _one(self, name: str, values: tuple[Any, ...]) -> BatchStatement:
        batch = BatchStatement(batch_type=BatchType.UNLOGGED)
        batch.add(self.stmts[name], values)
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
            statements.extend(self._partition("followers_clear", author, "followers_add",
                                              followers[author]))
            statements.extend(self._partition("user_posts_clear", author, "user_posts_add",
                                              profiles[author]))
        now = datetime.now(UTC)
        for post_id, row in sorted(image.post_rows.items()):
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            batch.add(self.stmts["post_clear"], (self.clear_at, post_id))
            if row.created_ms is not None:
                media = [(m.media_id, m.content_type, m.uri) for m in row.media or ()]
                batch.add(self.stmts["post_live"], (
                    post_id, row.author_id, row.caption, media, ms_to_dt(row.created_ms),
                    row.deleted, now if row.deleted else None, row.event_id, self.write_at))
            else:
                batch.add(self.stmts["post_retracted"],
                          (self.write_at, row.author_id, now, post_id))
            statements.append(batch)
            self.rows_written += 1
        return statements

    # --- counters -----------------------------------------------------------------------

    def write_counters(self, image: StoreImage, *, users: set[str] | None = None) -> None:
        """Post and user counters of the image (only ``users``' user counters when given)."""
        feed = image.feed
        statements: list[Any] = []
        pipe = self.redis.pipeline(transaction=True)
        if users is None:
            for post_id in sorted(image.counter_posts):
                batch = BatchStatement(batch_type=BatchType.UNLOGGED)
                batch.add(self.stmts["post_counters_clear"], (self.clear_at, post_id))
                pipe.delete(self.keys.post_counters(post_id))
                counts = feed.post_counters.get(post_id)
                if counts is not None:
                    batch.add(self.stmts["post_counters_set"],
                              (post_id, counts[0], counts[1], self.write_at))
                    pipe.hset(self.keys.post_counters(post_id),
                              mapping={"likes": counts[0], "comments": counts[1]})
                    self.rows_written += 1
                statements.append(batch)
        for user in sorted(image.counter_users if users is None
                           else image.counter_users & users):
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            batch.add(self.stmts["user_counters_clear"], (self.clear_at, user))
            pipe.delete(self.keys.user_counters(user))
            values = feed.user_counters.get(user, {})
            for name in ("followers", "following", "posts"):
                if name in values:
                    batch.add(self.stmts[_COUNTER_FIELD[name]],
                              (self.write_at, values[name], user))
            if values:
                pipe.hset(self.keys.user_counters(user), mapping=dict(values))
                self.rows_written += 1
            statements.append(batch)
        self._run(statements)
        pipe.execute()
