"""The pure parts of push on a Redis Cluster (``feedline.stores.cluster_push``) and its wiring."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis
from redis.crc import key_slot

from feedline.stores.async_redis import ResetSafeConnection
from feedline.stores.cluster_cache import ReachableCluster
from feedline.stores.cluster_push import (
    ClusterPushSubscription,
    Snapshot,
    merge_snapshots,
    parse_snapshot,
    push_subscription,
    slot_groups,
)
from feedline.stores.push_reader import PushSubscription, order_entries
from schemas.redis_keys import RedisKeys
from schemas.redis_push import EntryId
from serving.resources import Resources
from tests.support.unreachable import UNREACHABLE

KEYS = RedisKeys("t", cluster=True)


def items(*ids: str) -> list[tuple[str, dict[str, str]]]:
    return [(i, {"e": "feed", "d": "{}"}) for i in ids]


def test_slot_groups_share_a_slot_and_keep_first_seen_order() -> None:
    streams = [(None, KEYS.push("u1")), ("c1", KEYS.author_push("c1")),
               ("u1", KEYS.author_push("u1")), ("c2", KEYS.author_push("c2"))]
    groups = slot_groups(streams)
    assert groups == [[streams[0], streams[2]], [streams[1]], [streams[3]]]
    for group in groups:
        assert len({key_slot(key.encode()) for _, key in group}) == 1
    assert slot_groups([]) == []


def test_merge_equals_one_xread_when_every_snapshot_is_after_the_entries() -> None:
    reply = [(None, items("10-0", "12-0")), ("c1", items("11-0", "13-0", "14-0")),
             ("c2", items("12-0"))]
    snapshots = [Snapshot(20, reply[:1]), Snapshot(15, reply[1:])]
    for count in (1, 2, 3, 200):
        assert merge_snapshots(snapshots, count) == (*order_entries(reply, count), None)


def test_entries_after_the_earliest_snapshot_are_held_back() -> None:
    snapshots = [Snapshot(12, [(None, items("10-0", "12-0"))]),
                 Snapshot(30, [("c1", items("11-0", "13-0", "29-0"))])]
    entries, cursors, hold = merge_snapshots(snapshots, 200)
    assert [(e.raw_id, e.source) for e in entries] == [("10-0", None), ("11-0", "c1"),
                                                        ("12-0", None)]
    assert cursors == {None: EntryId(12, 0), "c1": EntryId(11, 0)} and hold is None


def test_nothing_to_hand_out_says_how_long_the_clocks_differ() -> None:
    snapshots = [Snapshot(7, []), Snapshot(30, [("c1", items("11-0", "13-0"))])]
    assert merge_snapshots(snapshots, 200) == ([], {}, 4)
    assert merge_snapshots([Snapshot(7, [])], 200) == ([], {}, None)
    assert merge_snapshots([], 200) == ([], {}, None)


def test_the_count_bound_and_the_time_bound_both_apply() -> None:
    # c1 was cut short at 11-0 by COUNT: nothing after it goes out, whatever the clocks say.
    snapshots = [Snapshot(50, [(None, items("10-0", "12-0"))]),
                 Snapshot(50, [("c1", items("9-0", "11-0"))])]
    entries, cursors, _ = merge_snapshots(snapshots, 2)
    assert [e.raw_id for e in entries] == ["9-0", "10-0", "11-0"]
    assert cursors == {"c1": EntryId(11, 0), None: EntryId(10, 0)}


def test_a_snapshot_reply_is_parsed_by_key() -> None:
    raw = ["1700000000", "123999", [[KEYS.author_push("c1"), [["5-1", ["e", "feed", "d", "{}"]]]]]]
    snapshot = parse_snapshot(raw, {KEYS.author_push("c1"): "c1"})
    assert snapshot == Snapshot(1_700_000_000_123, [("c1", [("5-1", {"e": "feed", "d": "{}"})])])
    assert parse_snapshot(["1", "0"], {}) == Snapshot(1000, [])  # XREAD found nothing


def test_the_subscription_follows_the_key_layout() -> None:
    plain = Redis.from_url("redis://127.0.0.1:1/0")
    sub = push_subscription(plain, RedisKeys("t"), "u1", block_ms=5, count=7)
    assert type(sub) is PushSubscription and sub.count == 7 and sub.block_ms == 5
    cluster = ReachableCluster.from_url("redis://127.0.0.1:1/0")
    sub = push_subscription(cluster, KEYS, "u1", block_ms=5)  # type: ignore[arg-type]
    assert isinstance(sub, ClusterPushSubscription)


def test_the_api_push_client_follows_the_cluster_setting() -> None:
    single = Resources(UNREACHABLE)
    cluster = Resources(UNREACHABLE.model_copy(update={"redis": UNREACHABLE.redis.model_copy(
        update={"cluster": True})}))
    try:
        assert single.push_redis.connection_pool.connection_class is ResetSafeConnection
        assert isinstance(cluster.push_redis, ReachableCluster)
        assert cluster.push_redis is not cluster.redis
        timeout = UNREACHABLE.api.stream_heartbeat_s + UNREACHABLE.api.redis_timeout_s + 5
        assert cluster.push_redis.connection_kwargs["socket_timeout"] == timeout
    finally:
        asyncio.run(single.close())
        asyncio.run(cluster.close())
