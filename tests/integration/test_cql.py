"""The CQL store: migrations are idempotent and versioned; prepared round trips work."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from feedline.settings import StackSettings
from feedline.stores.cql import (
    MigrationError,
    applied_migrations,
    load_migrations,
    migrate,
    pending_migrations,
)


def test_migrate_is_idempotent_and_records_every_version(
    stack: StackSettings, keyspace: str, cql_session
) -> None:
    assert migrate(stack.cql, keyspace=keyspace) == []
    applied = applied_migrations(cql_session, keyspace)
    assert sorted(applied) == [m.version for m in load_migrations()]
    tables = set(cql_session.cluster.metadata.keyspaces[keyspace].tables)
    assert {
        "posts", "user_posts", "followers", "following", "timelines",
        "post_counters", "user_counters", "celebrities", "media",
    } <= tables
    assert "comments" not in tables  # never written; dropped by 0002_drop_comments


def test_an_interrupted_migration_that_added_udt_fields_runs_again(
    stack: StackSettings, keyspace: str, cql_session
) -> None:
    # 0005 added media_ref's fields but was not recorded (the process died before): ScyllaDB
    # has no ADD IF NOT EXISTS, so the runner must skip the fields the type has.
    fields = ["media_id", "content_type", "uri", "width", "height", "duration_ms",
              "renditions", "placeholder"]
    cluster = cql_session.cluster
    cluster.refresh_user_type_metadata(keyspace, "media_ref")
    assert cluster.metadata.keyspaces[keyspace].user_types["media_ref"].field_names == fields
    forget = cql_session.prepare("DELETE FROM schema_migrations WHERE version = ?")
    cql_session.execute(forget, (5,))
    assert [m.name for m in migrate(stack.cql, keyspace=keyspace)] == ["post_media"]
    assert 5 in applied_migrations(cql_session, keyspace)
    cluster.refresh_user_type_metadata(keyspace, "media_ref")
    assert cluster.metadata.keyspaces[keyspace].user_types["media_ref"].field_names == fields


def test_edited_applied_migration_is_refused(stack: StackSettings, keyspace: str, cql_session):
    stmt = cql_session.prepare("UPDATE schema_migrations SET checksum = ? WHERE version = ?")
    cql_session.execute(stmt, ("0" * 64, 1))
    with pytest.raises(MigrationError, match="never edit an applied migration"):
        pending_migrations(cql_session, keyspace)


def test_prepared_round_trip_timeline_newest_first_and_bigint_counters(cql_session) -> None:
    insert = cql_session.prepare(
        "INSERT INTO timelines (user_id, created_at, post_id, author_id) VALUES (?, ?, ?, ?)"
    )
    times = [datetime(2026, 11, 21, 10, m, tzinfo=UTC) for m in (5, 1, 9, 3)]
    for i, t in enumerate(times):
        cql_session.execute(insert, ("reader", t, f"p{i}", "author"))
    select = cql_session.prepare("SELECT post_id FROM timelines WHERE user_id = ? LIMIT 3")
    assert [r.post_id for r in cql_session.execute(select, ("reader",))] == ["p2", "p0", "p3"]

    put = cql_session.prepare("INSERT INTO post_counters (post_id, likes, comments) VALUES (?,?,?)")
    cql_session.execute(put, ("p0", 2**40, 7))
    cql_session.execute(put, ("p0", 2**40, 7))  # an absolute write repeated changes nothing
    get = cql_session.prepare("SELECT likes, comments FROM post_counters WHERE post_id = ?")
    row = cql_session.execute(get, ("p0",)).one()
    assert (row.likes, row.comments) == (2**40, 7)


def test_post_with_media_udt_round_trips(cql_session) -> None:
    media_ref = cql_session.cluster.metadata.keyspaces[cql_session.keyspace].user_types
    assert "media_ref" in media_ref
    insert = cql_session.prepare(
        "INSERT INTO posts (post_id, author_id, caption, media, created_at, deleted) "
        "VALUES (?, ?, ?, ?, ?, false)"
    )
    cql_session.cluster.register_user_type(
        cql_session.keyspace, "media_ref", _MediaRef
    )
    created = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    media = [_MediaRef("m1", "image/jpeg", "gs://b/m1"), _MediaRef("m2", "video/mp4", "gs://b/m2")]
    cql_session.execute(insert, ("p1", "a1", "sunset", media, created))
    row = cql_session.execute(
        cql_session.prepare("SELECT author_id, media, created_at FROM posts WHERE post_id = ?"),
        ("p1",),
    ).one()
    assert row.author_id == "a1"
    assert [(m.media_id, m.content_type) for m in row.media] == [
        ("m1", "image/jpeg"), ("m2", "video/mp4")
    ]
    assert row.created_at.replace(tzinfo=UTC) == created


class _MediaRef:
    def __init__(self, media_id: str, content_type: str, uri: str, **metadata: object) -> None:
        self.media_id, self.content_type, self.uri = media_id, content_type, uri
        self.metadata = metadata  # width ... placeholder (0005_post_media.cql)
