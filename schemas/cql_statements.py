"""Every CQL statement feedline runs, declared once by name (the tables: ``schemas/cql/``).

Writers prepare the statements they use by name (``prepare``); the API's ``CqlClient``
prepares each text on first use. No statement text lives anywhere else.

Every write carries an explicit write time (``USING TIMESTAMP ?``, microseconds): the
streaming writer's comes from the events (``feedline.rules.write_order``: it grows per row
in event order), the rebuild's replaces a partition at ``T`` and writes its rows at
``T + 1``. ``posts.media`` is a non-frozen list: writing it twice at the same write time
would keep both copies, so the streaming writer first reads ``post_written`` and leaves
out a post payload written already. UPDATE and DELETE take the write time as their first bind
value, INSERT as its last (``bind_write`` puts it in place).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

#: Writes, by table. ``*_add`` / ``*_remove`` touch one row, ``*_clear`` a whole partition.
WRITES: dict[str, str] = {
    # posts: one row per post; a deleted post keeps its row as a tombstone.
    "post_upsert": "INSERT INTO posts (post_id, author_id, caption, media, created_at, deleted, "
    "deleted_at, event_id) VALUES (?, ?, ?, ?, ?, false, null, ?) USING TIMESTAMP ?",
    "post_row": "INSERT INTO posts (post_id, author_id, caption, media, created_at, deleted, "
    "deleted_at, event_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?",
    "post_retract": "UPDATE posts USING TIMESTAMP ? SET author_id = ?, deleted = true, "
    "deleted_at = ? WHERE post_id = ?",
    "post_clear": "DELETE FROM posts USING TIMESTAMP ? WHERE post_id = ?",
    # user_posts: an author's live posts (profiles; a celebrity's outbox in CQL).
    "user_post_add": "INSERT INTO user_posts (author_id, created_at, post_id) VALUES (?, ?, ?) "
    "USING TIMESTAMP ?",
    "user_post_remove": "DELETE FROM user_posts USING TIMESTAMP ? WHERE author_id = ? "
    "AND created_at = ? AND post_id = ?",
    "user_posts_clear": "DELETE FROM user_posts USING TIMESTAMP ? WHERE author_id = ?",
    # timelines: home timelines, a longer window than Redis keeps.
    "timeline_add": "INSERT INTO timelines (user_id, created_at, post_id, author_id) "
    "VALUES (?, ?, ?, ?) USING TIMESTAMP ?",
    "timeline_remove": "DELETE FROM timelines USING TIMESTAMP ? WHERE user_id = ? "
    "AND created_at = ? AND post_id = ?",
    "timeline_clear": "DELETE FROM timelines USING TIMESTAMP ? WHERE user_id = ?",
    # followers / following: the follow graph, both ways.
    "follower_add": "INSERT INTO followers (followee_id, follower_id, followed_at) "
    "VALUES (?, ?, ?) USING TIMESTAMP ?",
    "follower_remove": "DELETE FROM followers USING TIMESTAMP ? WHERE followee_id = ? "
    "AND follower_id = ?",
    "followers_clear": "DELETE FROM followers USING TIMESTAMP ? WHERE followee_id = ?",
    "following_add": "INSERT INTO following (follower_id, followee_id, followed_at) "
    "VALUES (?, ?, ?) USING TIMESTAMP ?",
    "following_remove": "DELETE FROM following USING TIMESTAMP ? WHERE follower_id = ? "
    "AND followee_id = ?",
    "following_clear": "DELETE FROM following USING TIMESTAMP ? WHERE follower_id = ?",
    # celebrities: authors above the threshold.
    "celebrity_add": "INSERT INTO celebrities (author_id) VALUES (?) USING TIMESTAMP ?",
    "celebrity_remove": "DELETE FROM celebrities USING TIMESTAMP ? WHERE author_id = ?",
    # post_counters / user_counters: absolute values (bigint, never CQL counters).
    "post_counters_set": "INSERT INTO post_counters (post_id, likes, comments) "
    "VALUES (?, ?, ?) USING TIMESTAMP ?",
    "post_counters_clear": "DELETE FROM post_counters USING TIMESTAMP ? WHERE post_id = ?",
    "user_counters_followers": "UPDATE user_counters USING TIMESTAMP ? SET followers = ? "
    "WHERE user_id = ?",
    "user_counters_following": "UPDATE user_counters USING TIMESTAMP ? SET following = ? "
    "WHERE user_id = ?",
    "user_counters_posts": "UPDATE user_counters USING TIMESTAMP ? SET posts = ? "
    "WHERE user_id = ?",
    "user_counters_clear": "DELETE FROM user_counters USING TIMESTAMP ? WHERE user_id = ?",
}

#: The write of each user counter (``UserCounterSet.field``): ``(write time, value, user)``.
USER_COUNTER_WRITES = {
    "followers": "user_counters_followers",
    "following": "user_counters_following",
    "posts": "user_counters_posts",
}

#: Reads. Keyset pages follow the clustering order ``(created_at DESC, post_id DESC)``.
READS: dict[str, str] = {
    "timeline_first": "SELECT created_at, post_id FROM timelines WHERE user_id = ? LIMIT ?",
    "timeline_after": "SELECT created_at, post_id FROM timelines WHERE user_id = ? "
    "AND (created_at, post_id) < (?, ?) LIMIT ?",
    "timeline_all": "SELECT post_id, created_at FROM timelines WHERE user_id = ?",
    "user_posts_first": "SELECT created_at, post_id FROM user_posts WHERE author_id = ? LIMIT ?",
    "user_posts_after": "SELECT created_at, post_id FROM user_posts WHERE author_id = ? "
    "AND (created_at, post_id) < (?, ?) LIMIT ?",
    "post": "SELECT post_id, author_id, caption, media, created_at, deleted FROM posts "
    "WHERE post_id = ?",
    "post_written": "SELECT writetime(created_at) AS written FROM posts WHERE post_id = ?",
    "post_counters": "SELECT likes, comments FROM post_counters WHERE post_id = ?",
    "user_counters": "SELECT followers, following, posts FROM user_counters WHERE user_id = ?",
    "user_counters_written": "SELECT followers, writetime(followers) AS followers_at, "
    "following, writetime(following) AS following_at, posts, writetime(posts) AS posts_at "
    "FROM user_counters WHERE user_id = ?",
    "followees": "SELECT followee_id FROM following WHERE follower_id = ?",
    "celebrities": "SELECT author_id FROM celebrities",
    "timeline_rows_count": "SELECT count(*) FROM timelines",
    "ping": "SELECT release_version FROM system.local",
}

#: The media records (not written with a write time): the API announces an upload in
#: ``media`` and marks it completed and published in ``media_processing``, where the media
#: worker records what it found (``schemas/cql/0004_media.cql``).
MEDIA: dict[str, str] = {
    "media_add": "INSERT INTO media (media_id, owner_id, content_type, bytes, uri, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?)",
    "media": "SELECT media_id, owner_id, content_type, bytes, uri FROM media WHERE media_id = ?",
    "media_processing": "SELECT status, reason, generation, width, height, duration_ms, "
    "renditions, placeholder, completed_at, published_at FROM media_processing "
    "WHERE media_id = ?",
    "media_completed": "UPDATE media_processing SET completed_at = ? WHERE media_id = ?",
    "media_published": "UPDATE media_processing SET published_at = ? WHERE media_id = ?",
    "media_processed": "UPDATE media_processing SET status = ?, reason = ?, generation = ?, "
    "width = ?, height = ?, duration_ms = ?, renditions = ?, placeholder = ?, "
    "processed_at = ? WHERE media_id = ?",
    "media_all": "SELECT media_id, owner_id FROM media",
}

#: The migration runner's bookkeeping (``feedline.stores.cql``).
MIGRATION_RECORD = (
    "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)"
)

STATEMENTS: dict[str, str] = {**WRITES, **READS, **MEDIA}

_WRITE_TIME_FIRST = {name: not cql.startswith("INSERT") for name, cql in WRITES.items()}


def applied_migrations_query(keyspace: str) -> str:
    """The migrations recorded in ``keyspace`` (a checked identifier, never user text)."""
    return f"SELECT version, name, checksum FROM {keyspace}.schema_migrations"  # noqa: S608


def prepare(session: Any, names: Iterable[str]) -> dict[str, Any]:
    """The named statements prepared on ``session``."""
    return {name: session.prepare(STATEMENTS[name]) for name in names}


def bind_write(name: str, values: tuple[Any, ...], write_time_us: int) -> tuple[Any, ...]:
    """The bind values of write ``name``: ``values`` with the write time in its place."""
    if _WRITE_TIME_FIRST[name]:
        return (write_time_us, *values)
    return (*values, write_time_us)


def media_values(media: Iterable[Any]) -> list[tuple[Any, ...]]:
    """``posts.media`` bind values: one ``media_ref`` per ``MediaRef``, in the UDT's field order.

    ``media_ref`` is ``(media_id, content_type, uri)`` plus, since ``0005_post_media.cql``,
    ``(width, height, duration_ms, renditions, placeholder)``, renditions being
    ``media_rendition`` values ``(uri, width, height, content_type)``; unknown metadata is null.
    """
    return [(m.media_id, m.content_type, m.uri, m.width, m.height, m.duration_ms,
             [(r.uri, r.width, r.height, r.content_type) for r in m.renditions] or None,
             m.placeholder) for m in media]


def ms_to_dt(ms: int) -> datetime:
    """Epoch milliseconds as an aware UTC datetime (the CQL timestamp type)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def dt_to_ms(value: datetime) -> int:
    """A CQL timestamp (naive UTC from the driver, or aware) as epoch milliseconds."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return round(value.timestamp() * 1000)


# --- notifications (``schemas/cql/0003_notifications.cql``) ---------------------------------

#: Writes of the notification tables (same conventions as ``WRITES``, which includes them).
NOTIFICATION_WRITES: dict[str, str] = {
    # notification_groups: one row per live group at its latest_at; a move is remove + add.
    "notification_group_add": "INSERT INTO notification_groups (recipient_id, latest_at, "
    "group_key, type, post_id, count, actors) VALUES (?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?",
    "notification_group_remove": "DELETE FROM notification_groups USING TIMESTAMP ? "
    "WHERE recipient_id = ? AND latest_at = ? AND group_key = ?",
    "notification_groups_clear": "DELETE FROM notification_groups USING TIMESTAMP ? "
    "WHERE recipient_id = ?",
    # notification_reads: write time = the marker in microseconds, so the marker only grows.
    "notification_read_mark": "INSERT INTO notification_reads (recipient_id, read_through) "
    "VALUES (?, ?) USING TIMESTAMP ?",
}

#: Reads. Keyset pages follow the clustering order ``(latest_at DESC, group_key DESC)``;
#: ``notification_unread`` lists the unread prefix (bind the cap as its limit and count).
NOTIFICATION_READS: dict[str, str] = {
    "notification_groups_first": "SELECT latest_at, group_key, type, post_id, count, actors "
    "FROM notification_groups WHERE recipient_id = ? LIMIT ?",
    "notification_groups_after": "SELECT latest_at, group_key, type, post_id, count, actors "
    "FROM notification_groups WHERE recipient_id = ? AND (latest_at, group_key) < (?, ?) "
    "LIMIT ?",
    "notification_read_marker": "SELECT read_through FROM notification_reads "
    "WHERE recipient_id = ?",
    "notification_unread": "SELECT latest_at FROM notification_groups WHERE recipient_id = ? "
    "AND latest_at > ? LIMIT ?",
    # `feedctl notifications --sample` with no list cached: some recipient of the store.
    "notification_some_recipient": "SELECT DISTINCT recipient_id FROM notification_groups "
    "LIMIT 1",
}

WRITES.update(NOTIFICATION_WRITES)
READS.update(NOTIFICATION_READS)
STATEMENTS.update({**NOTIFICATION_WRITES, **NOTIFICATION_READS})
_WRITE_TIME_FIRST.update(
    {name: not cql.startswith("INSERT") for name, cql in NOTIFICATION_WRITES.items()})


def read_marker_write_time(read_through_ms: int) -> int:
    """The write time of ``notification_read_mark``: the marker itself, in microseconds."""
    return read_through_ms * 1000
