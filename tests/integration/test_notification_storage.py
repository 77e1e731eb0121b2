"""The notifications storage layout on the real stores: migration 0003, every declared
statement, keyset order shared by CQL and Redis, a read marker that only moves forward."""

from __future__ import annotations

from feedline.settings import StackSettings
from feedline.stores.cql import applied_migrations, load_migrations, migrate
from schemas.cql_statements import (
    NOTIFICATION_READS,
    NOTIFICATION_WRITES,
    bind_write,
    dt_to_ms,
    ms_to_dt,
    prepare,
    read_marker_write_time,
)
from schemas.redis_notifications import (
    decode_group,
    encode_group,
    unread_score_range,
)

#: (latest_ms, group_key): two groups share a time, to check the tie-break on the key.
GROUPS = [(1_000, "like:p1"), (3_000, "follow:2026-11-30"), (3_000, "comment:p1"),
          (2_000, "mention:p2"), (4_000, "like:p2")]
NEWEST_FIRST = sorted(GROUPS, reverse=True)


def test_migration_0003_applies_and_is_idempotent(stack: StackSettings, keyspace: str,
                                                   cql_session) -> None:
    assert migrate(stack.cql, keyspace=keyspace) == []
    assert 3 in applied_migrations(cql_session, keyspace)
    assert max(m.version for m in load_migrations()) >= 3
    tables = set(cql_session.cluster.metadata.keyspaces[keyspace].tables)
    assert {"notification_groups", "notification_reads"} <= tables


def test_groups_page_newest_first_and_a_group_moves(cql_session) -> None:
    stmts = prepare(cql_session, [*NOTIFICATION_WRITES, *NOTIFICATION_READS])
    add = stmts["notification_group_add"]
    for when, key in GROUPS:
        values = ("r1", ms_to_dt(when), key, key.split(":")[0], None, 2, ["a", "b"])
        cql_session.execute(add, bind_write("notification_group_add", values, 10))
    first = list(cql_session.execute(stmts["notification_groups_first"], ("r1", 2)))
    assert [(dt_to_ms(r.latest_at), r.group_key) for r in first] == NEWEST_FIRST[:2]
    last = first[-1]
    rest = list(cql_session.execute(stmts["notification_groups_after"],
                                    ("r1", last.latest_at, last.group_key, 10)))
    assert [(dt_to_ms(r.latest_at), r.group_key) for r in rest] == NEWEST_FIRST[2:]
    assert rest[0].count == 2 and list(rest[0].actors) == ["a", "b"]

    # A newer like moves like:p1 from 1000 to 5000: remove the old row, add the new one.
    cql_session.execute(stmts["notification_group_remove"], bind_write(
        "notification_group_remove", ("r1", ms_to_dt(1_000), "like:p1"), 20))
    cql_session.execute(add, bind_write("notification_group_add", (
        "r1", ms_to_dt(5_000), "like:p1", "like", "p1", 3, ["c", "a", "b"]), 20))
    rows = list(cql_session.execute(stmts["notification_groups_first"], ("r1", 10)))
    assert [r.group_key for r in rows].count("like:p1") == 1
    top = rows[0]
    assert (dt_to_ms(top.latest_at), top.group_key, top.count) == (5_000, "like:p1", 3)

    unread = stmts["notification_unread"]
    newer = list(cql_session.execute(unread, ("r1", ms_to_dt(2_000), 500)))
    assert len(newer) == 4  # 5000, 4000 and the two groups at 3000
    assert len(list(cql_session.execute(unread, ("r1", ms_to_dt(2_000), 2)))) == 2  # the cap


def test_the_read_marker_only_moves_forward(cql_session) -> None:
    stmts = prepare(cql_session, ["notification_read_mark", "notification_read_marker"])
    for marker in (2_000_000, 1_000_000, 3_000_000, 2_500_000):  # arrival order is not order
        values = bind_write("notification_read_mark", ("r1", ms_to_dt(marker)),
                            read_marker_write_time(marker))
        cql_session.execute(stmts["notification_read_mark"], values)
    row = cql_session.execute(stmts["notification_read_marker"], ("r1",)).one()
    assert dt_to_ms(row.read_through) == 3_000_000


def test_redis_orders_like_cql_and_counts_unread(redis_keys) -> None:
    client, keys = redis_keys
    zset, payloads = keys.notifications("r1"), keys.notification_groups("r1")
    assert keys.notifications("r1").endswith(":{r1}")  # one hash slot per recipient
    client.zadd(zset, {key: when for when, key in GROUPS})
    client.hset(payloads, mapping={key: encode_group("like", "p1", 2, ("a",), when)
                                   for when, key in GROUPS})
    members = client.zrange(zset, "+inf", "-inf", byscore=True, desc=True, withscores=True)
    assert [(int(score), key) for key, score in members] == NEWEST_FIRST
    assert client.zcount(zset, *unread_score_range(2_000)) == 3
    assert client.zcount(zset, *unread_score_range(None)) == len(GROUPS)
    group = decode_group(client.hget(payloads, "like:p2"))
    assert (group.count, group.actors, group.latest_ms) == (2, ["a"], 4_000)
