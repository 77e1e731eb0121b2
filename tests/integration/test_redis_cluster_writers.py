"""The writers on a 3-master Redis Cluster leave exactly what they leave on one Redis.

The same random sequences of writer calls go to two deployments: a single Redis in the
default key layout and a Redis Cluster in the cluster layout (``RedisKeys(cluster=True)``),
each with its own CQL keyspace, so the reloads from the CQL store read the same rows. The
sequences are the streaming graph's in miniature (``test_writers_property``: several
``FeedWriter`` buckets in a random interleaving, restarts, chunks written again, or all
calls shuffled, which the writers' version guards allow), notification effects with
replays, and the batch rebuild's ``ImageWriter`` over streamed contents, run twice. Between
calls, keys are evicted (on both) and one primary forgets its scripts (NOSCRIPT). Every key
of the prefix, versions hashes and push streams (entries without their ids) included, must
be equal, key names compared without the hash-tag braces. The cluster's outbox versions
may hold one field more (``DROPPED_FIELD``, cluster only), left out of the comparison.

On the local stack: its Redis Cluster and a single Redis of the fixture's own
(``tests.support.redis_cluster``); the keyspaces go on the stack's CQL store.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
import redis.cluster

import tests.integration.test_writers_property as streamed
from feedline.rebuild.image import derive_image
from feedline.rebuild.notifications import derive_notifications
from feedline.rebuild.writer import ImageWriter
from feedline.rules.effects import (
    CelebritySet,
    NotificationDelete,
    NotificationEffect,
    NotificationUpsert,
    OutboxAdd,
    OutboxClear,
    PostUpsert,
)
from feedline.rules.fanout import RulesConfig
from feedline.settings import StackSettings
from feedline.settings_blocks import RedisSettings
from feedline.stores.cluster_writes import SlotTransactions, cache_client
from feedline.stores.cql import connect, drop_keyspace, migrate
from feedline.stores.feed_writer import FeedWriter
from feedline.stores.lua import source
from feedline.stores.notification_listing import NotificationLookup
from feedline.stores.notification_writer import NotificationWriter
from schemas.redis_keys import DROPPED_FIELD, RedisKeys
from tests.support.dump import TABLES
from tests.support.fixtures import unique
from tests.support.redis_cluster import prefix, servers

__all__ = ["prefix", "servers"]  # the fixtures


@dataclass
class Side:
    """One deployment: a CQL session, a Redis client and the key layout."""

    session: Any
    client: Any
    keys: RedisKeys


@pytest.fixture(scope="module")
def sessions(stack: StackSettings) -> Iterator[tuple[Any, Any]]:
    """Sessions on two new keyspaces (single, cluster) of the stack's store; dropped after."""
    cql = stack.cql
    names = [unique("ks_rcw"), unique("ks_rcw")]
    opened = []
    try:
        for name in names:
            migrate(cql, keyspace=name)
            opened.append(connect(cql, keyspace=name))
        yield opened[0][1], opened[1][1]
    finally:
        for cluster, _ in opened:
            cluster.shutdown()
        for name in names:
            drop_keyspace(cql, name)


@pytest.fixture
def sides(servers: tuple[str, str], prefix: str,
          sessions: tuple[Any, Any]) -> Iterator[tuple[Side, Side]]:
    """(single Redis, cluster) on empty tables, clients built as the jobs build them."""
    cluster_url, single_url = servers
    for session in sessions:
        for table in TABLES:
            session.execute(f"TRUNCATE {table}", timeout=120)
    single = cache_client(RedisSettings(url=single_url, key_prefix=prefix),
                          decode_responses=True)
    cluster = cache_client(RedisSettings(url=cluster_url, key_prefix=prefix, cluster=True),
                           decode_responses=True)
    assert isinstance(cluster, redis.cluster.RedisCluster)
    yield (Side(sessions[0], single, RedisKeys(prefix)),
           Side(sessions[1], cluster, RedisKeys(prefix, cluster=True)))
    single.close()
    cluster.close()


def unbraced(key: str) -> str:
    """A key's name without hash-tag braces (the layouts differ only by them)."""
    return key.replace("{", "").replace("}", "")


def contents(side: Side) -> dict[str, tuple[str, Any]]:
    """Every key of the prefix by its unbraced name: (type, whole value)."""
    client, keys = side.client, side.keys
    out: dict[str, tuple[str, Any]] = {}
    for key in client.scan_iter(match=keys.pattern(), count=1000):
        kind = client.type(key)
        value: Any
        if kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == "hash":
            value = dict(sorted(client.hgetall(key).items()))
            if keys.is_versions(key):
                value.pop(DROPPED_FIELD, None)
                if not value:
                    continue
        elif kind == "set":
            value = sorted(client.smembers(key))
        elif kind == "stream":  # entry ids are the server's clock: the entries in order
            value = [fields for _id, fields in client.xrange(key)]
        else:
            value = client.get(key)
        out[unbraced(key)] = (kind, value)
    return out


def assert_equal_contents(single: Side, cluster: Side) -> dict[str, tuple[str, Any]]:
    """Both deployments hold the same keys and values; returns the single one's."""
    plain, sharded = contents(single), contents(cluster)
    differing = sorted(k for k in set(plain) | set(sharded) if plain.get(k) != sharded.get(k))
    assert not differing, [(k, plain.get(k), sharded.get(k)) for k in differing[:5]]
    return plain


def evict(rng: random.Random, single: Side, cluster: Side, users: list[str]) -> None:
    """Drop one user's cached timeline, outbox or counters hash on both (an eviction)."""
    user = rng.choice(users)
    kind = rng.choice(["timeline", "outbox", "user_counters", "notifications"])
    for side in (single, cluster):
        side.client.delete(getattr(side.keys, kind)(user))


def forget_scripts(rng: random.Random, cluster: Side) -> None:
    """One primary of the cluster loses its scripts (as after a restart or a failover)."""
    node = rng.choice(cluster.client.get_primaries())
    cluster.client.execute_command("SCRIPT FLUSH", target_nodes=node)


@pytest.mark.parametrize("seed", range(8))
def test_feed_writers_leave_the_same_contents_on_the_cluster(
        sides: tuple[Side, Side], seed: int) -> None:
    """Buckets interleaved with restarts and rewritten chunks; odd seeds shuffle every call."""
    single, cluster = sides
    rng = random.Random(seed)
    events = [streamed._event(rng, i) for i in range(rng.randint(30, 70))]
    arrivals = events + rng.sample(events, len(events) // 5)  # duplicates
    rng.shuffle(arrivals)
    cap, writers = rng.randint(1, 4), rng.randint(2, 3)
    config = RulesConfig(celebrity_threshold=rng.randint(1, 3),
                         follow_merge_limit=rng.randint(0, 3), timeline_cap=cap)
    calls = streamed.interleave(rng, streamed.writer_queues(arrivals, config, writers))
    if seed % 2:
        rng.shuffle(calls)
    pools = [[FeedWriter(side.session, side.client, side.keys, timeline_cap=cap,
                         batch_size=rng.randint(1, 7)) for _ in range(writers)]
             for side in (single, cluster)]
    for w, chunk in calls:
        for pool in pools:
            pool[w].write_stamped(chunk)
        if rng.random() < 0.1:
            evict(rng, single, cluster, streamed.USERS)
        if rng.random() < 0.1:
            forget_scripts(rng, cluster)
    stored = assert_equal_contents(single, cluster)
    kinds = {name.split(":")[1] for name in stored}
    assert {"post", "v"} <= kinds, kinds  # not vacuous: posts and their versions


def _notification_effects(rng: random.Random, count: int) -> list[NotificationEffect]:
    """Effects as a recipient-keyed rule emits them: each group moves from where it was."""
    where: dict[tuple[str, str], int] = {}
    effects: list[NotificationEffect] = []
    for n in range(count):
        recipient, group = f"r{rng.randrange(4)}", f"like:p{rng.randrange(6)}"
        latest = where.get((recipient, group))
        if latest is not None and rng.random() < 0.25:
            effects.append(NotificationDelete(recipient, group, latest, latest, f"e{n}", n))
            del where[(recipient, group)]
            continue
        moved = 1_700_000_000_000 + rng.randrange(0, 50_000, 1_000)
        actors = tuple(f"u{a}" for a in rng.sample(range(6), rng.randint(1, 3)))
        effects.append(NotificationUpsert(recipient, group, "like", group[5:], len(actors),
                                          actors, moved, latest, moved, f"e{n}", n))
        where[(recipient, group)] = moved
    return effects


@pytest.mark.parametrize("seed", range(6))
def test_notification_writers_leave_the_same_contents_on_the_cluster(
        sides: tuple[Side, Side], seed: int) -> None:
    """Chunks in order, some written twice in a row (a replay), evictions, NOSCRIPT."""
    single, cluster = sides
    rng = random.Random(seed)
    cap = rng.randint(1, 4)
    effects = _notification_effects(rng, rng.randint(20, 60))
    pair = [NotificationWriter(side.session, side.client, side.keys, cap=cap, batch_size=3)
            for side in (single, cluster)]
    start = 0
    while start < len(effects):
        chunk = effects[start:start + rng.randint(1, 6)]
        start += len(chunk)
        for _ in range(2 if rng.random() < 0.3 else 1):
            for writer in pair:
                writer.write(chunk)
        if rng.random() < 0.15:
            evict(rng, single, cluster, ["r0", "r1", "r2", "r3"])
        if rng.random() < 0.1:
            forget_scripts(rng, cluster)
    stored = assert_equal_contents(single, cluster)
    assert any(name.split(":")[1] == "nz" for name in stored)
    # `feedctl notifications` reads the same listings on both (its lookup on the cluster
    # runs without MULTI: the cluster client has no transactions).
    for user in ["r0", "r1", "r2", "r3"]:
        single_list, cluster_list = (NotificationLookup(side.session, side.client, side.keys,
                                                        cap=cap).read(user, cap)
                                     for side in (single, cluster))
        assert cluster_list == single_list


@pytest.mark.parametrize("seed", range(4))
def test_the_rebuild_writer_leaves_the_same_contents_on_the_cluster(
        sides: tuple[Side, Side], seed: int) -> None:
    """Streamed contents first, then a rebuild of every table and list, run twice."""
    single, cluster = sides
    rng = random.Random(seed)
    events = [streamed._event(rng, i) for i in range(rng.randint(30, 70))]
    cap = rng.randint(1, 5)
    config = RulesConfig(celebrity_threshold=rng.randint(1, 3),
                         follow_merge_limit=rng.randint(0, 3), timeline_cap=cap)
    calls = streamed.interleave(rng, streamed.writer_queues(events[: len(events) // 2],
                                                            config, 1))
    image = derive_image(events, config)
    notifications = derive_notifications(events)
    users = sorted(image.readers | image.authors | set(streamed.USERS))
    timelines = {user: image.timeline_rows(user) for user in users}
    followed = {user: set(image.feed.followed_celebrities.get(user, ())) for user in users}
    for side in (single, cluster):
        streaming = FeedWriter(side.session, side.client, side.keys, timeline_cap=cap)
        for _w, chunk in calls:
            streaming.write_stamped(chunk)
        side.client.delete(side.keys.timeline(streamed.USERS[0]))  # one cached, one not
        for rebuilt_at in (5_000_000_000, 6_000_000_000):  # a second run replaces the first
            writer = ImageWriter(side.session, side.client, side.keys, timeline_cap=cap,
                                 write_time_us=rebuilt_at)
            writer.write_authors(image, all_tables=True)
            writer.write_counters(image)
            writer.write_timelines(timelines, followed, users)
            writer.write_notifications(notifications.groups, notifications.recipients, cap=cap)
    stored = assert_equal_contents(single, cluster)
    assert not any(name.endswith(":rebuilding") for name in stored)
    assert any(name.split(":")[1] == "tl" for name in stored)


def test_slot_transactions_equal_a_multi_exec_on_one_redis(sides: tuple[Side, Side]) -> None:
    """Large values (past the script's chunk), renames over live keys, deletes, sets."""
    single, cluster = sides
    multi = cluster.client.register_script(source("slot_multi.lua"))
    for side in (single, cluster):
        k = side.keys
        side.client.zadd(k.timeline("u1"), {"old": 1})
        side.client.sadd(k.followed_celebrities("u2"), "gone")
        pipe = (SlotTransactions(side.client, multi) if side is cluster
                else side.client.pipeline(transaction=True))
        scratch = f"{k.timeline('u1')}:rebuilding"
        pipe.delete(scratch)
        pipe.zadd(scratch, {f"p{i}": i for i in range(1_000)})
        pipe.rename(scratch, k.timeline("u1"))
        pipe.hset(k.versions(k.timeline("u1")), "", 7)
        pipe.delete(k.followed_celebrities("u2"))
        pipe.sadd(k.followed_celebrities("u2"), *[f"c{i}" for i in range(450)])
        pipe.srem(k.followed_celebrities("u2"), "c1", "c2")
        pipe.hset(k.post("p1"), mapping={f"f{i}": i for i in range(300)})
        pipe.execute()
    stored = assert_equal_contents(single, cluster)
    assert len(stored[unbraced(cluster.keys.timeline("u1"))][1]) == 1_000


def test_a_dropped_outbox_refuses_a_repair_read_before_the_drop(
        sides: tuple[Side, Side]) -> None:
    """The reader's two-step outbox repair around the writer's drop of the outbox.

    The reader read the CQL store (the author a celebrity) and completed the celebrities
    set; the writer then removes the author and drops the outbox; the reader's fill must
    not cache the outbox again. A fill read after the drop is not refused for it.
    """
    _, cluster = sides
    client, k = cluster.client, cluster.keys
    writer = FeedWriter(cluster.session, client, k, timeline_cap=5)
    now = time.time_ns() // 1000
    writer.write_stamped([(now, PostUpsert("p1", "a", 1_700_000_000_000, "hi", (), "evt1")),
                          (now + 1, CelebritySet("a", True)),
                          (now + 2, OutboxAdd("a", "p1", 1_700_000_000_000))])
    assert client.zrange(k.outbox("a"), 0, -1) == ["p1"]
    complete = client.register_script(source("celebrities_complete.lua"))
    fill = client.register_script(source("outbox_fill.lua"))
    every, outbox = k.celebrities(), k.outbox("a")
    read_at = time.time_ns() // 1000
    assert complete(keys=[every, k.versions(every)], args=[read_at, "a", "a"]) == 1
    writer.write_stamped([(now + 3, CelebritySet("a", False)), (now + 4, OutboxClear("a"))])
    assert not client.exists(outbox)
    args = [5, read_at, DROPPED_FIELD, 1_700_000_000_000, "p1"]
    assert fill(keys=[outbox, k.versions(outbox)], args=args) == 0
    assert not client.exists(outbox)
    later = [5, time.time_ns() // 1000 + 1_000, DROPPED_FIELD, 1_700_000_000_000, "p1"]
    assert fill(keys=[outbox, k.versions(outbox)], args=later) == 1
