"""The Redis key layout for Redis Cluster: which keys share a hash slot (no server needed).

A script or a MULTI may only touch keys of one slot on a cluster; a pipeline is split per
node by redis-py. These checks group the keys of each read step by ``key_slot`` (the
CRC16 of the hash tag, as the server computes it) and pin the single-node names, which
stay the default.
"""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from schemas.redis_keys import RedisKeys

PLAIN = RedisKeys("fl")
CLUSTER = RedisKeys("fl", cluster=True)


def slots(*keys: str) -> set[int]:
    """The hash slots of ``keys``."""
    return {key_slot(key.encode()) for key in keys}


def group_by_slot(keys: list[str]) -> dict[int, list[str]]:
    """Keys grouped by slot, as a cluster client routes them."""
    groups: dict[int, list[str]] = {}
    for key in keys:
        groups.setdefault(key_slot(key.encode()), []).append(key)
    return groups


def test_single_node_names_are_unchanged() -> None:
    k = PLAIN
    assert [k.timeline("u1"), k.outbox("a1"), k.post("p1"), k.post_counters("p1"),
            k.user_counters("u1"), k.followed_celebrities("u1"), k.celebrities(),
            k.rate_limit("u1", 7), k.idempotency("u1", "key"), k.author_push("a1"),
            k.versions(k.timeline("u1"))] == [
        "fl:tl:u1", "fl:ob:a1", "fl:post:p1", "fl:pc:p1", "fl:uc:u1", "fl:fc:u1",
        "fl:celebs", "fl:rl:u1:7", "fl:idem:u1:key", "fl:pa:a1", "fl:v:tl:u1"]


def test_cluster_names_tag_the_owner() -> None:
    k = CLUSTER
    assert [k.timeline("u1"), k.post("p1"), k.celebrities(), k.rate_limit("u1", 7),
            k.versions(k.outbox("a1"))] == [
        "fl:tl:{u1}", "fl:post:{p1}", "fl:{celebs}", "fl:rl:{u1}:7", "fl:v:ob:{a1}"]
    assert CLUSTER.pattern() == PLAIN.pattern()


def test_the_readers_page_script_keys_share_one_slot() -> None:
    k = CLUSTER
    head = [k.timeline("u1"), k.followed_celebrities("u1"), k.rate_limit("u1", 41),
            k.rate_limit("u1", 40)]
    assert len(slots(*head)) == 1
    # ... with the rest of what the user owns: the repair, the guards, notifications, push.
    own = [k.user_counters("u1"), k.idempotency("u1", "key"), k.idempotency("u1", "#index"),
           k.notifications("u1"), k.notification_groups("u1"), k.notifications_read("u1"),
           k.push("u1"), k.outbox("u1"), k.author_push("u1")]
    assert slots(*head, *own) == slots(head[0])


def test_an_outbox_step_and_a_hydration_touch_one_slot_each() -> None:
    k = CLUSTER
    assert len(slots(k.outbox("a1"), k.user_counters("a1"))) == 1
    assert len(slots(k.post("p1"), k.post_counters("p1"))) == 1
    every = k.celebrities()
    assert len(slots(every, k.versions(every))) == 1


@pytest.mark.parametrize("key", [CLUSTER.timeline("u1"), CLUSTER.outbox("a1"),
                                 CLUSTER.post("p1"), CLUSTER.post_counters("p1"),
                                 CLUSTER.user_counters("u1"),
                                 CLUSTER.followed_celebrities("u1"), CLUSTER.celebrities()])
def test_a_versions_hash_shares_its_keys_slot(key: str) -> None:
    assert slots(key) == slots(CLUSTER.versions(key))


def test_single_node_names_would_be_cross_slot() -> None:
    k = PLAIN
    assert len(slots(k.timeline("u1"), k.followed_celebrities("u1"))) > 1


def test_owners_spread_over_the_slots() -> None:
    readers = [CLUSTER.timeline(f"u{i}") for i in range(300)]
    groups = group_by_slot(readers)
    assert len(groups) > 250
    thirds = {slot * 3 // 16384 for slot in groups}
    assert thirds == {0, 1, 2}  # every master of a 3-master cluster holds some readers


def test_hydration_keys_group_by_post() -> None:
    k = CLUSTER
    keys = [key for p in ("p1", "p2", "p3") for key in (k.post(p), k.post_counters(p))]
    groups = group_by_slot(keys)
    assert sorted(map(sorted, groups.values())) == sorted(
        sorted([k.post(p), k.post_counters(p)]) for p in ("p1", "p2", "p3"))


def test_a_cluster_prefix_with_braces_is_refused() -> None:
    with pytest.raises(ValueError, match="hash tag"):
        RedisKeys("fl{x}", cluster=True)
    assert RedisKeys("fl{x}").timeline("u1") == "fl{x}:tl:u1"


@pytest.mark.parametrize("cluster", [False, True])
def test_a_scan_by_kind_finds_owner_keys_and_gives_their_owner(cluster: bool) -> None:
    keys = RedisKeys("fx", cluster=cluster)
    pattern = keys.kind_pattern("tl").removesuffix("*")
    for owner in ("u1", "user-with-dash", "a_b"):
        for key, kind in ((keys.timeline(owner), "tl"), (keys.notifications(owner), "nz"),
                          (keys.user_counters(owner), "uc")):
            assert keys.owner(key) == owner
            assert key.startswith(keys.kind_pattern(kind).removesuffix("*"))
    assert not keys.outbox("u1").startswith(pattern)
    assert not keys.versions(keys.timeline("u1")).startswith(pattern)
